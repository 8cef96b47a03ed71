// Open Clanker's web chat: sessions, streamed answers, history and reset, all over gRPC-Web.
import "./style.css";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  chatClient,
  Code,
  codeName,
  ConnectError,
  explain,
  gatewayClient,
  gatewayUrl,
  getToken,
  sessionClient,
  setToken,
  unreachable,
} from "./api.js";
import type { TurnError } from "./gen/openclanker/v1/chat_pb.js";
import { MessageStatus, Role, type Message, type Session } from "./gen/openclanker/v1/types_pb.js";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const ui = {
  sessions: $<HTMLUListElement>("sessions"),
  sessionsEmpty: $("sessions-empty"),
  newChat: $<HTMLButtonElement>("new-chat"),
  title: $("title"),
  reset: $<HTMLButtonElement>("reset"),
  banner: $("banner"),
  bannerText: $("banner-text"),
  bannerClose: $<HTMLButtonElement>("banner-close"),
  messages: $<HTMLOListElement>("messages"),
  empty: $("empty"),
  composer: $<HTMLFormElement>("composer"),
  input: $<HTMLTextAreaElement>("input"),
  send: $<HTMLButtonElement>("send"),
  gateway: $("gateway"),
  settings: $<HTMLDetailsElement>("settings"),
  tokenForm: $<HTMLFormElement>("token-form"),
  token: $<HTMLInputElement>("token"),
  tokenClear: $<HTMLButtonElement>("token-clear"),
};

let current = sessionFromHash(); // the open session's id; "" for a new chat
let sessions: Session[] = [];
let streaming: AbortController | null = null;

// ---- small helpers ------------------------------------------------------------------------------

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls = "", text = ""): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  return e;
}

function showBanner(text: string, kind: "error" | "info" = "error"): void {
  ui.bannerText.textContent = text;
  ui.banner.dataset.kind = kind;
  ui.banner.hidden = false;
}

function hideBanner(): void {
  ui.banner.hidden = true;
}

function failed(err: unknown): void {
  const e = ConnectError.from(err);
  if (e.code === Code.Unauthenticated) ui.settings.open = true;
  showBanner(explain(e));
}

function when(ts: Timestamp | undefined): string {
  if (!ts) return "";
  const d = timestampDate(ts);
  const same = d.toDateString() === new Date().toDateString();
  return same ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : d.toLocaleDateString();
}

function sessionLabel(s: Session): string {
  return s.title || s.key || "Untitled";
}

function sessionFromHash(): string {
  const m = /^#\/?s\/([\w-]+)$/.exec(location.hash);
  return m ? m[1] : "";
}

/** Opens `id` ("" for a new chat) in the URL, the title and the session list. */
function setCurrent(id: string, title?: string): void {
  current = id;
  const hash = id ? `#/s/${id}` : "";
  if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname + location.search);
  markCurrent(title);
}

/** Shows the current session as selected; the title from the list unless given. */
function markCurrent(title?: string): void {
  const known = sessions.find((s) => s.id === current);
  const label = !current ? "New chat" : (title ?? (known ? sessionLabel(known) : undefined));
  if (label !== undefined) ui.title.textContent = label;
  ui.reset.disabled = !current;
  for (const li of ui.sessions.children) {
    const on = (li as HTMLElement).dataset.id === current;
    li.classList.toggle("active", on);
    li.querySelector("button")?.setAttribute("aria-current", on ? "true" : "false");
  }
}

// ---- messages -----------------------------------------------------------------------------------

interface Bubble {
  li: HTMLLIElement;
  body: HTMLDivElement;
  meta: HTMLDivElement;
}

function bubble(role: "user" | "assistant", text: string): Bubble {
  const li = el("li", `msg ${role}`);
  const body = el("div", "body", text);
  const meta = el("div", "meta");
  li.append(body, meta);
  ui.messages.append(li);
  ui.empty.hidden = true;
  li.scrollIntoView({ block: "end" });
  return { li, body, meta };
}

function describe(m: Message): string {
  const parts: string[] = [];
  if (m.role === Role.ASSISTANT) {
    if (m.model) parts.push(m.model);
    if (m.usage) parts.push(`${m.usage.inputTokens} in / ${m.usage.outputTokens} out`);
    if (m.status === MessageStatus.INTERRUPTED) parts.push("interrupted");
  }
  parts.push(when(m.createTime));
  return parts.filter(Boolean).join(" · ");
}

function renderMessage(m: Message): void {
  if (m.role !== Role.USER && m.role !== Role.ASSISTANT) return;
  const b = bubble(m.role === Role.USER ? "user" : "assistant", m.content);
  b.meta.textContent = describe(m);
  b.li.dataset.id = String(m.id);
  if (m.status === MessageStatus.INTERRUPTED) b.li.classList.add("interrupted");
}

function clearMessages(): void {
  ui.messages.replaceChildren();
  ui.empty.hidden = false;
}

// ---- sessions -----------------------------------------------------------------------------------

async function refreshSessions(): Promise<void> {
  try {
    const res = await sessionClient.listSessions({ pageSize: 100 });
    sessions = res.sessions;
  } catch (err) {
    failed(err);
    return;
  }
  ui.sessions.replaceChildren(
    ...sessions.map((s) => {
      const li = el("li");
      li.dataset.id = s.id;
      const btn = el("button", "session");
      btn.type = "button";
      btn.append(el("span", "label", sessionLabel(s)), el("span", "sub", `${s.messageCount} message${s.messageCount === 1n ? "" : "s"} · ${when(s.updateTime)}`));
      btn.addEventListener("click", () => {
        hideBanner();
        void openSession(s.id);
      });
      li.append(btn);
      return li;
    }),
  );
  ui.sessionsEmpty.hidden = sessions.length > 0;
  markCurrent();
}

async function openSession(id: string): Promise<void> {
  streaming?.abort();
  clearMessages();
  setCurrent(id, id ? "…" : undefined);
  if (!id) return;
  try {
    const { session } = await sessionClient.getSession({ sessionId: id });
    if (current !== id) return;
    setCurrent(id, session ? sessionLabel(session) : "");
    let pageToken = "";
    do {
      const page = await sessionClient.getHistory({ sessionId: id, pageSize: 500, pageToken });
      if (current !== id) return;
      page.messages.forEach(renderMessage);
      pageToken = page.nextPageToken;
    } while (pageToken);
  } catch (err) {
    if (ConnectError.from(err).code === Code.NotFound) {
      setCurrent("");
      showBanner("That session no longer exists; starting a new chat.", "info");
    } else {
      failed(err);
    }
  }
}

async function resetSession(): Promise<void> {
  if (!current || !confirm("Clear this session's history? Its id and title stay.")) return;
  streaming?.abort();
  try {
    const res = await sessionClient.resetSession({ sessionId: current });
    clearMessages();
    showBanner(`Session reset: ${res.deletedMessages} messages removed.`, "info");
  } catch (err) {
    failed(err);
  }
  await refreshSessions();
}

// ---- chat ---------------------------------------------------------------------------------------

function setStreaming(on: boolean): void {
  ui.send.textContent = on ? "Stop" : "Send";
  ui.send.classList.toggle("stop", on);
  ui.composer.classList.toggle("busy", on);
}

async function send(text: string): Promise<void> {
  hideBanner();
  const controller = new AbortController();
  streaming = controller;
  setStreaming(true);
  bubble("user", text);
  const answer = bubble("assistant", "");
  answer.li.classList.add("streaming");
  let turnError: TurnError | undefined;
  let startedIn = current;
  try {
    const stream = chatClient.chat(
      { text, session: current ? { case: "sessionId", value: current } : { case: undefined } },
      { signal: controller.signal },
    );
    for await (const res of stream) {
      const ev = res.event;
      switch (ev.case) {
        case "started":
          answer.meta.textContent = `${ev.value.model} · writing…`;
          if (ev.value.sessionId !== current) {
            startedIn = ev.value.sessionId;
            setCurrent(ev.value.sessionId, text.slice(0, 60));
            void refreshSessions();
          }
          break;
        case "delta":
          answer.body.textContent += ev.value.text;
          answer.li.scrollIntoView({ block: "end" });
          break;
        case "completed":
          if (ev.value.message) {
            answer.body.textContent = ev.value.message.content;
            answer.meta.textContent = describe(ev.value.message);
            answer.li.dataset.id = String(ev.value.message.id);
          }
          break;
        case "error":
          turnError = ev.value;
          answer.li.classList.add("interrupted");
          if (ev.value.partial) answer.body.textContent = ev.value.partial.content;
          answer.meta.textContent = `failed: ${ev.value.code}`;
          showBanner(`The answer failed (${ev.value.code}): ${ev.value.message}`);
          break;
      }
    }
  } catch (err) {
    const e = ConnectError.from(err);
    if (!turnError) {
      answer.li.classList.add("interrupted");
      answer.meta.textContent =
        e.code === Code.Canceled ? "stopped" : unreachable(e) ? "failed: gateway unreachable" : `failed: ${codeName(e.code)}`;
      if (e.code !== Code.Canceled) failed(e);
    }
  } finally {
    answer.li.classList.remove("streaming");
    if (!answer.body.textContent) {
      answer.li.classList.add("no-text");
      answer.meta.textContent = `no answer · ${answer.meta.textContent}`;
    }
    if (streaming === controller) {
      streaming = null;
      setStreaming(false);
    }
    if (startedIn === current) void refreshSessions();
  }
}

// ---- gateway status -----------------------------------------------------------------------------

async function loadStatus(): Promise<void> {
  try {
    const s = await gatewayClient.getStatus({});
    const p = s.providers.find((x) => x.name === s.defaultProvider);
    const configured = s.providers.filter((x) => x.configured).map((x) => x.name);
    ui.gateway.textContent = `gateway ${s.version} · ${p ? `${p.name} ${p.defaultModel}` : s.defaultProvider}`;
    ui.gateway.title = gatewayUrl;
    if (!configured.length) {
      showBanner("No AI provider is configured on the gateway: set ANTHROPIC_API_KEY or OPENAI_API_KEY and restart it.");
    }
  } catch (err) {
    const e = ConnectError.from(err);
    ui.gateway.textContent = unreachable(e)
      ? "gateway unreachable"
      : e.code === Code.Unauthenticated
        ? "gateway: API token needed"
        : `gateway: ${codeName(e.code)}`;
    failed(e);
  }
}

// ---- wiring -------------------------------------------------------------------------------------

ui.composer.addEventListener("submit", (e) => {
  e.preventDefault();
  if (streaming) {
    streaming.abort();
    return;
  }
  const text = ui.input.value.trim();
  if (!text) return;
  ui.input.value = "";
  void send(text);
});
ui.input.addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
    e.preventDefault();
    ui.composer.requestSubmit();
  }
});
ui.newChat.addEventListener("click", () => {
  hideBanner();
  void openSession("");
  ui.input.focus();
});
ui.reset.addEventListener("click", () => void resetSession());
ui.bannerClose.addEventListener("click", hideBanner);
ui.token.value = getToken();
ui.tokenForm.addEventListener("submit", (e) => {
  e.preventDefault();
  setToken(ui.token.value.trim());
  showBanner(ui.token.value.trim() ? "API token saved." : "API token cleared.", "info");
  void loadStatus();
  void refreshSessions();
});
ui.tokenClear.addEventListener("click", () => {
  ui.token.value = "";
  setToken("");
  showBanner("API token cleared.", "info");
});
addEventListener("hashchange", () => {
  const id = sessionFromHash();
  if (id !== current) {
    hideBanner();
    void openSession(id);
  }
});

void (async () => {
  await Promise.all([loadStatus(), refreshSessions()]);
  await openSession(current);
  ui.input.focus();
})();
