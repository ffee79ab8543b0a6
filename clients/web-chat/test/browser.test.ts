/**
 * Two users chat through the web chat in headless Chromium (Debian's `chromium`, driven by
 * puppeteer-core), against a real parley-server serving the page (`web_chat.dir`), with a
 * kill -9 and restart of the node in the middle. Screenshots go to clients/artifacts/web-chat/.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import puppeteer, { type Browser, type Page } from "puppeteer-core";
import { cleanUp, REPO, TestNode } from "../../typescript/test/harness.js";

const CLIENTS = join(REPO, "clients");
const ARTIFACTS = join(CLIENTS, "artifacts/web-chat");
const CHROMIUM = process.env.PARLEY_CHROMIUM ?? "/usr/bin/chromium";
const WAIT_MS = 15_000;

let node: TestNode;
let browser: Browser;

before(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  console.log(`screenshots: ${ARTIFACTS}`);
  const dir = join(CLIENTS, "web-chat/dist");
  node = await TestNode.start({ PARLEY__WEB_CHAT__DIR: dir }, "development");
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--headless=new", "--no-sandbox"],
  });
});

after(async () => {
  await browser?.close();
  await cleanUp();
});

/** A page signed in as `name`, in its own browser context (its own localStorage). */
async function signedIn(name: string): Promise<Page> {
  const context = await browser.createBrowserContext();
  const page = await context.newPage();
  await page.setViewport({ width: 900, height: 600 });
  await page.goto(`${node.http}/chat/`);
  await page.type("#signin-name", name);
  await page.click("#signin-button");
  await page.waitForFunction(() => document.getElementById("me")?.textContent !== "", {
    timeout: WAIT_MS,
  });
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** Waits until the open conversation shows a message whose text contains `text`. */
async function showsMessage(page: Page, text: string): Promise<void> {
  await page.waitForFunction(
    (wanted) =>
      [...document.querySelectorAll("#messages .message .text")].some((node) =>
        node.textContent?.includes(wanted),
      ),
    { timeout: WAIT_MS },
    text,
  );
}

async function texts(page: Page): Promise<string[]> {
  return page.$$eval("#messages .message .text", (nodes) =>
    nodes.map((node) => node.textContent ?? ""),
  );
}

async function send(page: Page, text: string): Promise<void> {
  await page.type("#composer", text);
  await page.click("#send");
}

/** Clicks a button of the message whose text is `text`. */
async function messageButton(page: Page, text: string, button: string): Promise<void> {
  await page.$$eval(
    "#messages .message",
    (rows, wanted, selector) => {
      const row = rows.find((each) => each.querySelector(".text")?.textContent === wanted);
      (row?.querySelector(selector) as HTMLElement | null)?.click();
    },
    text,
    `button.${button}`,
  );
}

async function waitFor(page: Page, what: string, check: string): Promise<void> {
  await page.waitForFunction(check, { timeout: WAIT_MS }).catch((error: Error) => {
    throw new Error(`${what}: ${error.message}`);
  });
}

/** Creates a group from the page's form. */
async function createGroup(page: Page, title: string, members: string): Promise<void> {
  await page.type("#new-title", title);
  await page.type("#new-members", members);
  await page.click("#new-create");
}

/** Alice opens a group with bob and writes; bob sees it unread, reads it; ticks and presence. */
async function firstMessage(alice: Page, bob: Page): Promise<void> {
  await createGroup(alice, "Trip", "bob");
  await waitFor(alice, "the group is open", "!document.getElementById('conversation').hidden");
  await send(alice, "hello bob");
  await waitFor(
    bob,
    "bob's list shows one unread",
    "document.querySelector('.conversation .unread')?.textContent === '1'",
  );
  await shot(bob, "1-bob-unread");
  await bob.click(".conversation");
  await showsMessage(bob, "hello bob");
  await waitFor(
    alice,
    "alice's tick turns read",
    "document.querySelector('.message.mine .tick.read') !== null",
  );
  await waitFor(
    alice,
    "bob is online",
    "document.querySelector('.presence.online[data-user=bob]') !== null",
  );
}

/** Typing, a reply, a reaction and an edit, each seen by the other user. */
async function conversation(alice: Page, bob: Page): Promise<void> {
  await bob.type("#composer", "hi");
  await waitFor(
    alice,
    "alice sees bob typing",
    "document.getElementById('typing').textContent.includes('bob')",
  );
  await bob.click("#send");
  await showsMessage(alice, "hi");
  await messageButton(bob, "hello bob", "reply");
  await send(bob, "a reply");
  await waitFor(
    alice,
    "alice sees the quote",
    "[...document.querySelectorAll('.quote')].some(q => q.textContent.includes('hello bob'))",
  );
  await messageButton(alice, "a reply", "react");
  await waitFor(
    bob,
    "bob sees the reaction",
    "[...document.querySelectorAll('.reactions')].some(r => r.textContent.includes('👍1'))",
  );
  await messageButton(alice, "hello bob", "edit");
  await alice.$eval("#composer", (input) => {
    (input as HTMLInputElement).value = "";
  });
  await send(alice, "hello bob (edited text)");
  await showsMessage(bob, "hello bob (edited text)");
  await shot(alice, "2-alice-conversation");
}

/** kill -9 of the node: banner, a message sent meanwhile waits, then arrives once. */
async function restart(alice: Page, bob: Page): Promise<void> {
  await node.kill9();
  await waitFor(alice, "the reconnecting banner", "!document.getElementById('banner').hidden");
  await send(alice, "sent during the restart");
  await waitFor(alice, "a pending tick", "document.querySelector('.tick.pending') !== null");
  await shot(alice, "3-alice-reconnecting");
  await node.spawn();
  await showsMessage(bob, "sent during the restart");
  await waitFor(alice, "the banner goes away", "document.getElementById('banner').hidden");
  const seen = await texts(bob);
  const copies = seen.filter((text) => text === "sent during the restart");
  assert.equal(copies.length, 1, seen.join(" | "));
}

test("two users chat in the browser, through a server restart", async () => {
  const alice = await signedIn("alice");
  const bob = await signedIn("bob");
  await firstMessage(alice, bob);
  await conversation(alice, bob);
  await restart(alice, bob);
  await messageButton(bob, "hi", "delete");
  await waitFor(
    alice,
    "alice sees the deletion",
    "document.querySelector('.message.deleted') !== null",
  );
  await shot(bob, "4-bob-after-restart");
});

test("scroll-back loads older messages page by page", async () => {
  const carol = await signedIn("carol");
  await createGroup(carol, "Bulk", "dave");
  await waitFor(
    carol,
    "the group is listed",
    "document.querySelectorAll('.conversation').length === 1",
  );
  const id = await carol.$eval(".conversation", (row) => (row as HTMLElement).dataset.id ?? "");
  for (let index = 1; index <= 60; index += 1) {
    const message = { sender_id: "dave", client_msg_id: `bulk-${index}`, text: `bulk ${index}` };
    await node.api(`/conversations/${id}/messages`, message);
  }
  // A fresh page (still signed in) opens the conversation from history.
  await carol.reload();
  await carol.waitForSelector(`.conversation[data-id="${id}"]`, { timeout: WAIT_MS });
  await carol.click(`.conversation[data-id="${id}"]`);
  await showsMessage(carol, "bulk 60");
  assert.equal((await texts(carol)).length, 50, "the first page");
  await carol.click("#older");
  await waitFor(
    carol,
    "the older page",
    "document.querySelectorAll('#messages .message').length === 60",
  );
  const all = await texts(carol);
  assert.deepEqual(
    all,
    Array.from({ length: 60 }, (_, index) => `bulk ${index + 1}`),
  );
  await shot(carol, "5-carol-scrollback");
});
