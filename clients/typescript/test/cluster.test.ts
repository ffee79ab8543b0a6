/** goaway during a drain moves the client to the other node of a Redis cluster; an expired
 * token is replaced by a fresh one from getToken(). */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { Message, OutgoingMessage, ParleyClient, Welcome } from "../src/index.js";
import {
  anyToken,
  cleanUp,
  client,
  collect,
  group,
  numbered,
  sleep,
  TestNode,
  TestRedis,
  waitFor,
} from "./harness.js";

after(cleanUp);

function welcomes(client: ParleyClient): Welcome[] {
  const seen: Welcome[] = [];
  client.on("welcome", (welcome) => seen.push(welcome));
  return seen;
}

test("goaway during a drain moves the client to the other node without loss", async () => {
  const redis = await TestRedis.start();
  const env = { PARLEY__REDIS__URL: redis.url, PARLEY__SERVER__DRAIN_WINDOW_MS: "500" };
  const draining = await TestNode.start(env);
  const staying = await TestNode.start(env);
  const alice = client([draining, staying], "alice");
  const bob = client([staying], "bob");
  const aliceNodes = welcomes(alice);
  const goaways: { at: number; waitMs: number }[] = [];
  alice.on("goaway", (goaway) =>
    goaways.push({ at: Date.now(), waitMs: goaway.reconnect_after_ms }),
  );
  let movedAt = 0;
  alice.on("welcome", () => {
    movedAt = Date.now();
  });
  await Promise.all([alice.ready(), bob.ready()]);
  const conversationId = await group(alice, ["bob"]);
  const seen = collect(bob, conversationId);
  const texts = numbered(30);
  const sent: OutgoingMessage[] = [];
  const drained = (async () => {
    await sleep(150);
    await draining.terminate();
  })();
  for (const text of texts) {
    sent.push(alice.send(conversationId, text));
    await sleep(20);
  }
  await drained;
  await waitFor("every send accepted", () => sent.every((message) => message.state !== "pending"));
  await waitFor("bob has every message", () => firstOfEach(seen).length >= texts.length);
  await sleep(300);
  const [goaway] = goaways;
  assert.ok(goaway && goaways.length === 1, "alice was told to go");
  assert.ok(movedAt - goaway.at >= goaway.waitMs, "alice waited as told before reconnecting");
  assert.deepEqual(
    aliceNodes.map((welcome) => welcome.node_id.endsWith(String(staying.port))),
    [false, true],
    "alice moved from the draining node to the other one",
  );
  // Every message once (a retry through the other node while the draining node still held
  // the send used to create it twice), in order, dense in seq.
  assert.deepEqual(firstOfEach(seen), seen, "no client_msg_id was created twice");
  assert.deepEqual(
    seen.map((message) => message.text),
    texts,
  );
  assert.deepEqual(
    seen.map((message) => message.seq),
    seen.map((_, index) => index + 1),
  );
  assert.ok(sent.every((message) => message.state !== "failed"));
});

/** The first message of each `client_msg_id`, in order. */
function firstOfEach(messages: Message[]): Message[] {
  const keys = new Set<string>();
  return messages.filter((message) => {
    if (keys.has(message.client_msg_id)) return false;
    keys.add(message.client_msg_id);
    return true;
  });
}

test("a token that expires is replaced by a fresh one from getToken()", async () => {
  const node = await TestNode.start();
  const issued: string[] = [];
  const alice = client([node], "alice", {
    getToken: async () => {
      const token = await anyToken([node], "alice", issued.length === 0 ? 2 : 3600);
      issued.push(token);
      return token;
    },
  });
  const bob = client([node], "bob");
  await Promise.all([alice.ready(), bob.ready()]);
  const states: string[] = [];
  alice.on("state", (state) => states.push(state));
  const conversationId = await group(bob, ["alice"]);
  const seen = collect(alice, conversationId);
  await waitFor("the session closes with 4001 and comes back", () => states.length >= 2, 10_000);
  const late = bob.send(conversationId, "after the refresh");
  await waitFor("alice gets it", () => seen.length >= 1);
  assert.deepEqual(states, ["reconnecting", "connected"]);
  assert.equal(issued.length, 2, "one fresh token after 4001");
  assert.notEqual(late.state, "failed");
});
