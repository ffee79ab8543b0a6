/** A client that reads too slowly is closed with 4009; the SDK reconnects and resyncs. */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { OutgoingMessage } from "../src/index.js";
import { cleanUp, client, collect, group, Network, TestNode, waitFor } from "./harness.js";

after(cleanUp);

test("after close 4009 (too slow), the app still gets every message once, in order", async () => {
  // No ingest linger: it hands alice a batch's `message.stored` at once, more than a queue of 8
  // holds while she sends this fast, and she, not bob, would be closed.
  const node = await TestNode.start({
    PARLEY__LIMITS__OUTBOUND_QUEUE: "8",
    PARLEY__INGEST__LINGER_MS: "0",
  });
  const bobsNetwork = new Network();
  const alice = client([node], "alice");
  const bob = client([node], "bob", { WebSocket: bobsNetwork.WebSocket });
  await Promise.all([alice.ready(), bob.ready()]);
  const conversationId = await group(alice, ["bob"]);
  const seen = collect(bob, conversationId);
  const closes: number[] = [];
  bob.on("disconnected", (closed) => closes.push(closed.code));
  bobsNetwork.stall();
  const padding = "x".repeat(40 * 1024);
  const sent: OutgoingMessage[] = [];
  const overflows = () => node.metric("parley_ws_outbound_overflows_total");
  // In batches, until the server's queue for bob overflows (the kernel buffers fill first).
  while ((await overflows()) < 1) {
    assert.ok(sent.length < 1000, "the server never gave up on a client that does not read");
    const batch = Array.from({ length: 10 }, (_, index) =>
      alice.send(conversationId, `${sent.length + index + 1} ${padding}`),
    );
    sent.push(...batch);
    await waitFor("the batch is accepted", () => batch.every((each) => each.state !== "pending"));
  }
  bobsNetwork.unstall();
  await waitFor("bob has every message", () => seen.length >= sent.length, 30_000);
  assert.equal(closes[0], 4009, `bob was closed for reading too slowly: ${closes}`);
  assert.deepEqual(
    seen.map((message) => message.seq),
    sent.map((_, index) => index + 1),
  );
});
