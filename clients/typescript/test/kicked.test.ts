/** Close 4003: an operator disconnects a user; the SDK stops instead of reconnecting. */
import assert from "node:assert/strict";
import { after, test } from "node:test";
import type { SocketClosed } from "../src/index.js";
import { cleanUp, client, sleep, TestNode, waitFor } from "./harness.js";

after(cleanUp);

const ADMIN_KEY = "sdk-test-admin-key-0123456789";

test("a kicked client closes for good and says why", async () => {
  const node = await TestNode.start({ PARLEY__AUTH__ADMIN_API_KEY: ADMIN_KEY });
  const mallory = client([node], "mallory");
  await mallory.ready();
  const ends: SocketClosed[] = [];
  mallory.on("disconnected", (closed) => ends.push(closed));

  const response = await fetch(`${node.http}/api/v1/admin/users/mallory/disconnect`, {
    method: "POST",
    headers: { "X-Admin-Key": ADMIN_KEY },
  });
  assert.equal(response.status, 200);

  await waitFor("closed", () => mallory.state === "closed");
  assert.deepEqual(
    ends.map((closed) => closed.code),
    [4003],
  );
  // Longer than the test backoff's ceiling: a reconnecting client would be back by now.
  await sleep(1500);
  assert.equal(mallory.state, "closed");
  assert.equal(ends.length, 1);
});
