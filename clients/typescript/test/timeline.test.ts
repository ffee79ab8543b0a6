/** The timeline alone: order, duplicates and gaps, with no server. */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { Message } from "../src/index.js";
import { memoryStorage, StoredValue } from "../src/storage.js";
import { Timeline } from "../src/timeline.js";

function message(seq: number): Message {
  return {
    message_id: `m${seq}`,
    conversation_id: "c",
    seq,
    sender_id: "alice",
    client_msg_id: `k${seq}`,
    text: `text ${seq}`,
    reply_to: null,
    forwarded_from: null,
    reactions: {},
    created_at: "2026-12-03T00:00:00Z",
    edited_at: null,
    deleted: false,
    attachments: [],
  };
}

test("messages reach the app once each, in seq order, across gaps and duplicates", () => {
  const storage = memoryStorage();
  const delivered: number[] = [];
  const timeline = new Timeline(new StoredValue(storage, "seqs"), (each) =>
    delivered.push(each.seq),
  );
  timeline.adopt("c", 0);
  assert.equal(timeline.accept(message(1)), "applied");
  assert.equal(timeline.accept(message(3)), "waiting");
  assert.equal(timeline.hasGap("c"), true);
  assert.equal(timeline.accept(message(1)), "duplicate");
  assert.equal(timeline.accept(message(2)), "applied");
  assert.equal(timeline.accept(message(3)), "duplicate");
  assert.deepEqual(delivered, [1, 2, 3]);
  assert.equal(timeline.hasGap("c"), false);
  const reloaded = new Timeline(new StoredValue(storage, "seqs"), () => undefined);
  assert.equal(reloaded.lastSeq("c"), 3, "the last seq survives in storage");
});
