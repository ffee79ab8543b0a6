/** The reconnect policy and the backoff alone, with no server. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "../src/backoff.js";
import { planReconnect } from "../src/reconnect.js";

const welcomed = (code: number) => ({ code, reason: "", welcomed: true });
const fixed = () => new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1);

test("each way a connection ends has its plan", () => {
  const goaway = planReconnect(welcomed(1001), 1500, false, fixed());
  assert.equal(goaway.url, "next");
  assert.ok(goaway.delayMs >= 1500 && goaway.delayMs <= 1800, `${goaway.delayMs}`);
  assert.deepEqual(planReconnect(welcomed(4001), undefined, false, fixed()), {
    delayMs: 0,
    token: "fresh",
    url: "same",
  });
  assert.ok(planReconnect(welcomed(4008), undefined, false, fixed()).delayMs >= 5000);
  assert.deepEqual(planReconnect(welcomed(4009), undefined, false, fixed()), {
    delayMs: 100,
    token: "same",
    url: "same",
  });
  const refused = { code: 1006, reason: "", welcomed: false };
  assert.deepEqual(planReconnect(refused, undefined, true, fixed()), {
    delayMs: 100,
    token: "fresh",
    url: "next",
  });
});

test("the backoff doubles up to its ceiling, with half of each delay random", () => {
  const highest = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 1);
  assert.deepEqual(
    [1, 2, 3, 4, 5].map(() => highest.next()),
    [100, 200, 400, 800, 1000],
  );
  const lowest = new Backoff({ initialMs: 100, maxMs: 1000 }, () => 0);
  assert.deepEqual(
    [1, 2, 3].map(() => lowest.next()),
    [50, 100, 200],
  );
  lowest.reset();
  assert.equal(lowest.next(), 50);
});
