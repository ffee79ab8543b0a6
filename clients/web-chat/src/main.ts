/** The web chat's entry: sign in by name through the node's development token route, then
 * run the chat on one SDK client (last seen seqs and unsent messages in localStorage). */
import { connect } from "@parley/client";
import { ChatApp } from "./chat.js";
import { byId } from "./view.js";

interface TokenReply {
  token: string;
  socket_urls: string[];
}

/** A token from `POST /api/v1/dev/token` (only offered by a node in development mode). */
async function devToken(userId: string): Promise<TokenReply> {
  const response = await fetch("/api/v1/dev/token", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ user_id: userId }),
  });
  const body = (await response.json()) as TokenReply & { error?: { message: string } };
  if (!response.ok) throw new Error(body.error?.message ?? `HTTP ${response.status}`);
  return body;
}

/** The socket URL of the page's own node (the token's `socket_urls` name the bind address). */
function pageSocketUrl(): string {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

async function signIn(userId: string): Promise<void> {
  await devToken(userId);
  const client = connect({
    url: pageSocketUrl(),
    getToken: async () => (await devToken(userId)).token,
    storage: localStorage,
  });
  new ChatApp(client);
  byId("signin").hidden = true;
  byId("chat").hidden = false;
  sessionStorage.setItem("parley-user", userId);
}

byId("signin").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = byId<HTMLInputElement>("signin-name").value.trim();
  signIn(name).catch((error: Error) => {
    byId("signin-error").textContent = `Cannot sign in: ${error.message}`;
  });
});

const remembered = sessionStorage.getItem("parley-user");
if (remembered) void signIn(remembered);
