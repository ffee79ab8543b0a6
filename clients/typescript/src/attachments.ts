/** Protocol v1.1 attachments over the node's REST API: upload a file (declare it, then PUT its
 * bytes to the presigned URL the node answers) and download one (the node answers a redirect
 * to a short-lived URL, which `fetch` follows). Both carry the socket's token as
 * `Authorization: Bearer`. */
import { ParleyError } from "./errors.js";
import type { AttachmentId, ErrorBody } from "./generated/wire.js";

export interface UploadOptions {
  /** The file name shown to other members. */
  name: string;
  /** Its MIME type; the node refuses types it is not configured to accept (`bad_request`). */
  contentType: string;
}

/** `POST /api/v1/attachments`'s answer. */
interface Declared {
  attachment_id: AttachmentId;
  upload_url: string;
  upload_method: string;
  upload_headers: Record<string, string>;
  expires_at: string;
}

/** The node's HTTP base for one of its socket URLs: `ws(s)://host/ws` → `http(s)://host`. */
export function httpBase(socketUrl: string): string {
  const url = new URL(socketUrl);
  url.protocol = url.protocol === "wss:" ? "https:" : "http:";
  return url.origin;
}

/** Declares and uploads `bytes`; returns the id to pass to `send()`. A declaration the node
 * refuses (too large, a refused type) throws a `ParleyError` before any byte is sent. */
export async function uploadAttachment(
  base: string,
  token: string,
  bytes: Uint8Array,
  options: UploadOptions,
): Promise<AttachmentId> {
  const declared = await fetch(`${base}/api/v1/attachments`, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify({
      name: options.name,
      content_type: options.contentType,
      size: bytes.byteLength,
    }),
  });
  const upload = (await answer(declared)) as Declared;
  const put = await fetch(upload.upload_url, {
    method: upload.upload_method,
    headers: upload.upload_headers,
    body: new Uint8Array(bytes),
  });
  if (!put.ok) throw new Error(`upload of ${options.name} failed: HTTP ${put.status}`);
  return upload.attachment_id;
}

/** The bytes of an attachment the caller may see (its uploader, or a member of a conversation
 * whose message carries it); anyone else gets `not_found`. */
export async function downloadAttachment(
  base: string,
  token: string,
  attachmentId: AttachmentId,
): Promise<Uint8Array> {
  const response = await fetch(`${base}/api/v1/attachments/${encodeURIComponent(attachmentId)}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!response.ok) await answer(response);
  return new Uint8Array(await response.arrayBuffer());
}

/** A JSON answer, or the `ParleyError` of a JSON error body. */
async function answer(response: Response): Promise<unknown> {
  const body = (await response.json().catch(() => undefined)) as { error?: ErrorBody } | undefined;
  if (response.ok) return body;
  if (body?.error) throw new ParleyError(body.error);
  throw new Error(`HTTP ${response.status} from ${response.url}`);
}
