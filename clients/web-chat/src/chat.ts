import type { ConversationId, Message, ParleyClient } from "@parley/client";
import { ChatState } from "./state.js";
import {
  byId,
  type MessageActions,
  renderComposer,
  renderConversations,
  renderHeader,
  renderMessages,
  renderTyping,
} from "./view.js";

/** Receivers hide a typing indicator after this long without a new `typing.start`. */
const TYPING_SHOWN_MS = 6000;

/** The chat page on one SDK client. */
export class ChatApp implements MessageActions {
  private readonly state = new ChatState();

  constructor(private readonly client: ParleyClient) {
    this.listen();
    this.bindForms();
  }

  private listen(): void {
    const client = this.client;
    client.on("state", (connection) => {
      this.state.connection = connection;
      byId("banner").hidden = connection === "connected";
      if (connection === "connected") void this.refresh();
    });
    client.on("welcome", (welcome) => {
      this.state.me = welcome.user_id;
      byId("me").textContent = welcome.user_id;
    });
    client.on("message", (message) => this.arrived(message));
    client.on("message.state", (message) => {
      this.state.sentState(message);
      this.renderOpen();
    });
    client.on("message.edited", ({ message }) => this.changed(message.conversation_id, message));
    client.on("message.deleted", ({ conversation_id, message_id }) =>
      this.state.update(conversation_id, message_id, (message) => ({
        ...message,
        deleted: true,
        text: "",
        reactions: {},
      })),
    );
    client.on("message.deleted", () => this.renderOpen());
    client.on("reaction.updated", ({ conversation_id, message_id, reactions }) => {
      this.state.update(conversation_id, message_id, (message) => ({ ...message, reactions }));
      this.renderOpen();
    });
    this.listenToPeople();
  }

  private listenToPeople(): void {
    const client = this.client;
    client.on("receipt.updated", ({ conversation_id, user_id, delivered_seq, read_seq }) => {
      if (user_id === this.state.me) return;
      this.state.receipt(conversation_id, user_id, delivered_seq, read_seq);
      this.renderOpen();
    });
    client.on("typing", ({ conversation_id, user_id, state }) => {
      if (conversation_id !== this.state.openId) return;
      clearTimeout(this.state.typing.get(user_id));
      this.state.typing.delete(user_id);
      if (state === "started") {
        const hide = setTimeout(() => {
          this.state.typing.delete(user_id);
          renderTyping(this.state);
        }, TYPING_SHOWN_MS);
        this.state.typing.set(user_id, hide);
      }
      renderTyping(this.state);
    });
    client.on("presence", ({ user_id, online, last_seen }) => {
      this.state.presence.set(user_id, { online, last_seen: last_seen ?? null });
      renderHeader(this.state);
    });
    client.on("member.joined", () => void this.refresh());
    client.on("member.left", () => void this.refresh());
    client.on("conversation.updated", () => void this.refresh());
  }

  private bindForms(): void {
    byId("new-group").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.createGroup();
    });
    byId("composer-form").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.submit();
    });
    byId("composer").addEventListener("input", () => {
      if (this.state.openId) this.client.typing(this.state.openId);
    });
    byId("older").addEventListener("click", () => void this.older());
    byId("cancel-reply").addEventListener("click", () => {
      this.state.replyTo = undefined;
      this.state.editing = undefined;
      renderComposer(this.state);
    });
  }

  /** The conversation list, with unread counts (after every reconnect and membership change). */
  private async refresh(): Promise<void> {
    const { conversations } = await this.client.request("conversation.list", { limit: 200 });
    this.state.listed(conversations);
    const open = this.state.openId && this.state.conversations.get(this.state.openId);
    if (open) this.state.read(open.conversation_id, open.last_seq);
    renderConversations(this.state, (id) => void this.open(id));
  }

  private async createGroup(): Promise<void> {
    const title = byId<HTMLInputElement>("new-title");
    const members = byId<HTMLInputElement>("new-members");
    const { conversation } = await this.client.request("conversation.create", {
      kind: "group",
      title: title.value.trim() || undefined,
      members: members.value
        .split(",")
        .map((name) => name.trim())
        .filter((name) => name.length > 0),
    });
    title.value = "";
    members.value = "";
    await this.refresh();
    await this.open(conversation.conversation_id);
  }

  private async open(id: ConversationId): Promise<void> {
    const state = this.state;
    state.openId = id;
    state.typing.clear();
    state.replyTo = undefined;
    state.editing = undefined;
    byId("conversation").hidden = false;
    state.pager = this.client.history(id);
    for (const message of await state.pager.older()) state.put(message);
    const item = state.conversations.get(id);
    if (item) {
      const presence = await this.client.presence(item.members.filter((m) => m !== state.me));
      for (const [user, info] of Object.entries(presence)) state.presence.set(user, info);
    }
    renderConversations(state, (next) => void this.open(next));
    renderHeader(state);
    renderComposer(state);
    renderTyping(state);
    this.renderOpen();
    await this.markRead();
  }

  private async older(): Promise<void> {
    const pager = this.state.pager;
    if (!pager) return;
    for (const message of await pager.older()) this.state.put(message);
    this.renderOpen();
  }

  private async markRead(): Promise<void> {
    const id = this.state.openId;
    const item = id ? this.state.conversations.get(id) : undefined;
    if (!id || !item || item.last_seq === 0) return;
    this.state.read(id, item.last_seq);
    renderConversations(this.state, (next) => void this.open(next));
    await this.client.markRead(id, item.last_seq).catch(() => undefined);
  }

  private arrived(message: Message): void {
    this.state.put(message);
    this.state.arrived(message);
    if (!this.state.conversations.has(message.conversation_id)) {
      void this.refresh();
      return;
    }
    renderConversations(this.state, (id) => void this.open(id));
    if (message.conversation_id !== this.state.openId) return;
    this.renderOpen();
    if (document.visibilityState !== "hidden") void this.markRead();
  }

  private changed(id: ConversationId, message: Message): void {
    this.state.update(id, message.message_id, () => message);
    this.renderOpen();
  }

  private async submit(): Promise<void> {
    const id = this.state.openId;
    const composer = byId<HTMLInputElement>("composer");
    const text = composer.value.trim();
    if (!id || text.length === 0) return;
    composer.value = "";
    this.client.stopTyping(id);
    const editing = this.state.editing;
    if (editing) {
      const conversation_id = id;
      await this.client.request("message.edit", {
        conversation_id,
        message_id: editing.message_id,
        text,
      });
    } else {
      const sent = this.client.send(id, text, this.state.replyTo?.message_id);
      this.state.sentState(sent);
    }
    this.state.replyTo = undefined;
    this.state.editing = undefined;
    renderComposer(this.state);
  }

  reply(message: Message): void {
    this.state.editing = undefined;
    this.state.replyTo = message;
    renderComposer(this.state);
    byId<HTMLInputElement>("composer").focus();
  }

  edit(message: Message): void {
    this.state.replyTo = undefined;
    this.state.editing = message;
    byId<HTMLInputElement>("composer").value = message.text;
    renderComposer(this.state);
  }

  remove(message: Message): void {
    const { conversation_id, message_id } = message;
    void this.client.request("message.delete", { conversation_id, message_id });
  }

  react(message: Message, emoji: string): void {
    const { conversation_id, message_id } = message;
    const mine = message.reactions[emoji]?.includes(this.state.me) ?? false;
    const op = mine ? "reaction.remove" : "reaction.add";
    void this.client.request(op, { conversation_id, message_id, emoji });
  }

  private renderOpen(): void {
    if (this.state.openId) renderMessages(this.state, this);
  }
}
