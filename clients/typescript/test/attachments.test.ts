/** Protocol v1.1 attachments through the SDK, against a real node (its local blob store). */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { after, test } from "node:test";
import { ParleyError } from "../src/index.js";
import { cleanUp, client, collect, group, TestNode, waitFor } from "./harness.js";

after(cleanUp);

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

test("a file uploaded and sent is downloaded by another member, byte for byte", async () => {
  const node = await TestNode.start();
  const alice = client([node], "alice");
  const bob = client([node], "bob");
  const carol = client([node], "carol");
  await Promise.all([alice.ready(), bob.ready(), carol.ready()]);
  const conversationId = await group(alice, ["bob"]);
  const seen = collect(bob, conversationId);
  const file = new Uint8Array(randomBytes(300 * 1024));
  const attachmentId = await alice.upload(file, { name: "photo.png", contentType: "image/png" });
  alice.send(conversationId, "here it is", undefined, [attachmentId]);
  await waitFor("bob has the message", () => seen.length === 1);
  assert.deepEqual(seen[0]?.attachments, [
    {
      attachment_id: attachmentId,
      name: "photo.png",
      content_type: "image/png",
      size: file.byteLength,
    },
  ]);
  assert.equal(sha256(await bob.download(attachmentId)), sha256(file));
  await assert.rejects(carol.download(attachmentId), (error: unknown) => {
    return error instanceof ParleyError && error.code === "not_found";
  });
});

test("a declaration over the size limit is refused before any byte moves", async () => {
  const node = await TestNode.start();
  const alice = client([node], "alice");
  await alice.ready();
  const tooLarge = new Uint8Array(25 * 1024 * 1024 + 1);
  await assert.rejects(
    alice.upload(tooLarge, { name: "big.bin", contentType: "application/pdf" }),
    (error: unknown) => error instanceof ParleyError && error.code === "too_large",
  );
});
