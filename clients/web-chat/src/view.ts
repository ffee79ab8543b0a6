import type { Message } from "@parley/client";
import type { ChatState } from "./state.js";

/** What the buttons of a message do. */
export interface MessageActions {
  reply(message: Message): void;
  edit(message: Message): void;
  remove(message: Message): void;
  react(message: Message, emoji: string): void;
}

const TICKS: Record<string, string> = {
  pending: "🕓",
  accepted: "✓",
  stored: "✓",
  delivered: "✓✓",
  read: "✓✓",
  failed: "⚠",
};

export function byId<T extends HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`#${id} is missing`);
  return element as T;
}

function element(tag: string, className: string, text = ""): HTMLElement {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

function button(label: string, className: string, onClick: () => void): HTMLButtonElement {
  const node = element("button", className, label) as HTMLButtonElement;
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

export function renderConversations(state: ChatState, open: (id: string) => void): void {
  const list = byId("conversations");
  list.replaceChildren();
  for (const item of state.conversations.values()) {
    const title = item.title ?? item.members.filter((member) => member !== state.me).join(", ");
    const row = element(
      "li",
      `conversation${item.conversation_id === state.openId ? " open" : ""}`,
    );
    row.dataset.id = item.conversation_id;
    row.append(element("span", "title", title));
    if (item.unread > 0) row.append(element("span", "unread", String(item.unread)));
    row.addEventListener("click", () => open(item.conversation_id));
    list.append(row);
  }
}

export function renderHeader(state: ChatState): void {
  const item = state.openId ? state.conversations.get(state.openId) : undefined;
  byId("title").textContent = item?.title ?? "Direct";
  const members = byId("members");
  members.replaceChildren();
  for (const member of item?.members ?? []) {
    if (member === state.me) continue;
    const online = state.presence.get(member)?.online ? "online" : "offline";
    const node = element("span", `presence ${online}`, `${member} `);
    node.dataset.user = member;
    members.append(node);
  }
}

function renderMessage(state: ChatState, message: Message, actions: MessageActions): HTMLElement {
  const mine = message.sender_id === state.me;
  const row = element("li", `message${message.deleted ? " deleted" : ""}${mine ? " mine" : ""}`);
  row.dataset.seq = String(message.seq);
  if (message.reply_to) {
    const quoted = [...state.conversationMessages(message.conversation_id).values()].find(
      (candidate) => candidate.message_id === message.reply_to,
    );
    row.append(element("span", "quote", `↪ ${quoted?.text ?? "an older message"}`));
  }
  row.append(element("span", "sender", message.sender_id));
  row.append(element("span", "text", message.deleted ? "deleted" : message.text));
  if (message.edited_at && !message.deleted) row.append(element("span", "edited", "(edited)"));
  const reactions = Object.entries(message.reactions)
    .map(([emoji, users]) => `${emoji}${users.length}`)
    .join(" ");
  row.append(element("span", "reactions", reactions));
  if (mine) {
    const tick = state.tick(message);
    row.append(element("span", `tick ${tick}`, TICKS[tick] ?? ""));
  }
  if (message.deleted) return row;
  row.append(button("reply", "reply", () => actions.reply(message)));
  row.append(button("👍", "react", () => actions.react(message, "👍")));
  if (mine) {
    row.append(button("edit", "edit", () => actions.edit(message)));
    row.append(button("delete", "delete", () => actions.remove(message)));
  }
  return row;
}

export function renderMessages(state: ChatState, actions: MessageActions): void {
  const list = byId("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  list.replaceChildren();
  const messages = state.openId ? state.conversationMessages(state.openId) : new Map();
  const ordered = [...messages.values()].sort((left, right) => left.seq - right.seq);
  for (const message of ordered) list.append(renderMessage(state, message, actions));
  const shown = new Set(ordered.map((message) => message.client_msg_id));
  const waiting = state.openId ? state.unacknowledged(state.openId) : [];
  for (const pending of waiting.filter((message) => !shown.has(message.client_msg_id))) {
    const row = element("li", "message mine unacknowledged");
    row.append(element("span", "sender", state.me), element("span", "text", pending.text));
    row.append(element("span", "tick pending", TICKS.pending));
    list.append(row);
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
  byId<HTMLButtonElement>("older").hidden = state.pager?.done ?? true;
}

export function renderTyping(state: ChatState): void {
  const names = [...state.typing.keys()];
  byId("typing").textContent = names.length > 0 ? `${names.join(", ")} typing…` : "";
}

export function renderComposer(state: ChatState): void {
  const replying = byId("replying");
  const target = state.editing ?? state.replyTo;
  replying.hidden = target === undefined;
  const label = state.editing ? "editing" : "replying to";
  (replying.firstElementChild as HTMLElement).textContent = target
    ? `${label}: ${target.text}`
    : "";
}
