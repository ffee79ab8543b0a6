import type { ErrorBody, ErrorCode } from "./generated/wire.js";

/** A failure reply from the server: `code` is the stable contract, `message` is for humans. */
export class ParleyError extends Error {
  readonly code: ErrorCode;
  readonly retryAfterMs: number | undefined;

  constructor(body: ErrorBody) {
    super(`${body.code}: ${body.message}`);
    this.name = "ParleyError";
    this.code = body.code;
    this.retryAfterMs = body.retry_after_ms;
  }
}

/** Why a request got no reply: it timed out, or the connection ended before the reply came. */
export type NoReplyReason = "timeout" | "disconnected" | "closed";

/** A request that got no reply. Only `message.send` through the outbox is retried by the SDK. */
export class NoReplyError extends Error {
  readonly reason: NoReplyReason;

  constructor(op: string, reason: NoReplyReason) {
    super(`no reply to \`${op}\`: ${reason}`);
    this.name = "NoReplyError";
    this.reason = reason;
  }
}
