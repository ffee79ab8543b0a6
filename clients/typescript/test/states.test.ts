/** A sent message's observable states, against a real node. */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { MessageState } from "../src/index.js";
import { cleanUp, client, collect, group, TestNode, waitFor } from "./harness.js";

after(cleanUp);

const ORDER: MessageState[] = ["pending", "accepted", "stored", "delivered", "read"];

test("a sent message goes pending, accepted, stored, delivered, read", async () => {
  const node = await TestNode.start();
  const alice = client([node], "alice");
  const bob = client([node], "bob", { deliveredReceipts: "manual" });
  await Promise.all([alice.ready(), bob.ready()]);
  const conversationId = await group(alice, ["bob"]);
  const seen = collect(bob, conversationId);
  const states: MessageState[] = [];
  const sent = alice.send(conversationId, "how far did it get?");
  alice.on("message.state", (message) => {
    if (message.client_msg_id === sent.client_msg_id) states.push(message.state);
  });
  states.push(sent.state);
  await waitFor("stored", () => states.includes("stored"));
  await waitFor("bob has it", () => seen.length === 1);
  const seq = seen[0]?.seq ?? 0;
  await bob.request("receipt.delivered", { conversation_id: conversationId, seq });
  await waitFor("delivered", () => states.includes("delivered"));
  await bob.markRead(conversationId, seq);
  await waitFor("read", () => states.includes("read"));
  // `message.stored` may overtake the ack: then "accepted" is skipped, never reordered.
  const expected = ORDER.filter((state) => state !== "accepted" || states.includes("accepted"));
  assert.deepEqual(states, expected);
});
