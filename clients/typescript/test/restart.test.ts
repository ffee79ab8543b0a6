/** kill -9 and restart of the node while a peer sends; a send made while offline. */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { OutgoingMessage } from "../src/index.js";
import {
  cleanUp,
  client,
  collect,
  group,
  Network,
  numbered,
  sleep,
  TestNode,
  waitFor,
} from "./harness.js";

after(cleanUp);

/** Alice and bob in a group; bob's network can be cut, so that what alice sends while he is
 * away reaches him only through the `sync` that follows his reconnect. */
async function pair(node: TestNode, options = {}) {
  const bobsNetwork = new Network();
  const alice = client([node], "alice", options);
  const bob = client([node], "bob", { ...options, WebSocket: bobsNetwork.WebSocket });
  await Promise.all([alice.ready(), bob.ready()]);
  return { alice, bob, bobsNetwork, conversationId: await group(alice, ["bob"]) };
}

test("after kill -9 and a restart mid-stream, the app has every message once, in order", async () => {
  const node = await TestNode.start();
  const { alice, bob, bobsNetwork, conversationId } = await pair(node);
  const seen = collect(bob, conversationId);
  const texts = numbered(30);
  const sent: OutgoingMessage[] = [];
  for (const [index, text] of texts.entries()) {
    sent.push(alice.send(conversationId, text));
    if (index === 10) {
      bobsNetwork.cut();
      await node.kill9();
    }
    if (index === 20) await node.spawn();
    await sleep(15);
  }
  await waitFor("every send accepted", () => sent.every((message) => message.state !== "pending"));
  assert.equal(bob.state, "reconnecting");
  bobsNetwork.restore();
  await waitFor("bob has every message", () => seen.length >= texts.length);
  await sleep(300);
  assert.deepEqual(
    seen.map((message) => message.text),
    texts,
  );
  assert.deepEqual(
    seen.map((message) => message.seq),
    texts.map((_, index) => index + 1),
  );
  assert.equal(bob.lastSeq(conversationId), texts.length);
});

test("a message sent while the node is down is delivered exactly once", async () => {
  const node = await TestNode.start();
  const { alice, bob, bobsNetwork, conversationId } = await pair(node);
  const seen = collect(bob, conversationId);
  bobsNetwork.cut();
  await node.kill9();
  await waitFor("alice sees the connection drop", () => alice.state === "reconnecting");
  const offline = alice.send(conversationId, "sent while offline");
  assert.equal(offline.state, "pending");
  await node.spawn();
  await waitFor("the offline send is accepted", () => offline.state !== "pending");
  assert.equal(bob.state, "reconnecting", "bob gets it by sync, once he is back");
  bobsNetwork.restore();
  await waitFor("bob has it", () => seen.length >= 1);
  await sleep(300);
  assert.deepEqual(
    seen.map((message) => message.text),
    ["sent while offline"],
  );
});

test("a send retried while the node does not answer is created once (same client_msg_id)", async () => {
  const node = await TestNode.start();
  const { alice, bob, conversationId } = await pair(node, { requestTimeoutMs: 300 });
  const seen = collect(bob, conversationId);
  node.freeze();
  const frozen = alice.send(conversationId, "sent to a frozen node");
  await sleep(1000);
  node.thaw();
  await waitFor("the send is accepted", () => frozen.state !== "pending");
  const page = await bob.request("history.get", { conversation_id: conversationId });
  await sleep(300);
  assert.deepEqual(
    page.messages.map((message) => message.text),
    ["sent to a frozen node"],
  );
  assert.deepEqual(
    seen.map((message) => message.text),
    ["sent to a frozen node"],
  );
});
