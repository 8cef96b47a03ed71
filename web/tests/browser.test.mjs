// The web chat page in a real browser (headless Chromium from Debian, driven by playwright-core),
// against the real gateway binary and the stand-in provider, both started here on ephemeral ports.
//
//   cargo build -p open-clanker -p open-clanker-testkit && (cd web && npm ci && npm test)
//
// Env: CHROMIUM (default /usr/bin/chromium), CARGO_TARGET_DIR (default ../target), SCREENSHOT_DIR
// (default ../build/screenshots).
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";

const ROOT = resolve(import.meta.dirname, "../..");
const BIN = join(process.env.CARGO_TARGET_DIR ? resolve(process.env.CARGO_TARGET_DIR) : join(ROOT, "target"), "debug");
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = resolve(process.env.SCREENSHOT_DIR || join(ROOT, "build/screenshots"));
const KEY = "sk-web-test-key-7";
const WAIT = 15_000;

const home = mkdtempSync(join(tmpdir(), "oc-web-test-"));
const children = [];
let gatewayProc;
let base; // http://127.0.0.1:PORT of the gateway
let browser; // a persistent context with a fresh profile
let page;
const pageErrors = [];

function killAll() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
}
process.on("exit", killAll);
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => {
    killAll();
    process.exit(1);
  });
}

/** Starts a binary and resolves with the address from its "listening on ..." stdout line. */
function start(name, args, env) {
  const path = join(BIN, name);
  if (!existsSync(path)) throw new Error(`${path} is missing: run \`cargo build -p open-clanker -p open-clanker-testkit\``);
  const proc = spawn(path, args, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.push(proc);
  let stderr = "";
  proc.stderr.on("data", (d) => (stderr = (stderr + d).slice(-4000)));
  return new Promise((ok, fail) => {
    let out = "";
    const timer = setTimeout(() => fail(new Error(`${name} did not start in time: ${stderr}`)), WAIT);
    proc.stdout.on("data", (d) => {
      out += d;
      const m = /listening on (?:http:\/\/)?(\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        ok({ proc, addr: m[1] });
      }
    });
    proc.on("exit", (code) => {
      clearTimeout(timer);
      fail(new Error(`${name} exited (${code}) before listening: ${stderr}`));
    });
  });
}

const env = { PATH: process.env.PATH ?? "", HOME: home, XDG_CONFIG_HOME: home, RUST_LOG: "warn" };
let standinAddr;
let gateways = 0;

/** A gateway on an ephemeral port with its own data dir, talking to the stand-in. */
async function startGateway(extra = {}) {
  const dir = join(home, `gateway-${++gateways}`);
  mkdirSync(dir);
  // No retries: a provider failure reaches the page at once instead of after the backoff.
  const config = join(dir, "open-clanker.toml");
  writeFileSync(config, "[providers.anthropic]\nmax_retries = 0\n");
  const gw = await start("open-clanker", ["gateway"], {
    ...env,
    OPEN_CLANKER_CONFIG: config,
    OPEN_CLANKER_LISTEN: "127.0.0.1:0",
    OPEN_CLANKER_DATA_DIR: join(dir, "data"),
    ANTHROPIC_API_KEY: KEY,
    ANTHROPIC_BASE_URL: `http://${standinAddr}`,
    ...extra,
  });
  return { proc: gw.proc, base: `http://${gw.addr}` };
}

before(async () => {
  const standin = await start("open-clanker-standin", ["--listen", "127.0.0.1:0", "--api-key", KEY], env);
  standinAddr = standin.addr;
  const gw = await startGateway();
  gatewayProc = gw.proc;
  base = gw.base;

  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium`);
  browser = await chromium.launchPersistentContext(join(home, "chromium-profile"), {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1100, height: 700 },
    timeout: WAIT,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  browser.setDefaultTimeout(WAIT);
  page = browser.pages()[0] ?? (await browser.newPage());
  page.on("pageerror", (e) => pageErrors.push(e.message));
  page.on("dialog", (d) => d.accept()); // the reset confirmation
  mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close().catch(() => {});
  killAll();
  rmSync(home, { recursive: true, force: true });
});

const assistantBody = "#messages li.assistant:last-child .body";
const texts = (sel) => page.locator(sel).allTextContents();

async function send(text) {
  await page.fill("#input", text);
  await page.press("#input", "Enter");
}

async function waitIdle() {
  await page.waitForSelector("#messages li.assistant:last-child:not(.streaming)");
  await page.waitForFunction(() => document.getElementById("send")?.textContent === "Send");
}

function sessionInUrl() {
  return /#\/s\/([\w-]+)$/.exec(page.url())?.[1];
}

const ANSWER = Array.from({ length: 20 }, (_, i) => `tok${i}`).join(" ");

test("the gateway serves the page's assets with types, ETags and gzip", async () => {
  const index = await fetch(`${base}/`);
  assert.equal(index.status, 200);
  assert.equal(index.headers.get("content-type"), "text/html; charset=utf-8");
  assert.match(index.headers.get("content-security-policy") ?? "", /connect-src 'self'/);
  assert.match(await index.text(), /<script type="module" src="app\.js">/);

  const js = await fetch(`${base}/app.js`, { headers: { "accept-encoding": "gzip" } });
  assert.equal(js.status, 200);
  assert.equal(js.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.equal(js.headers.get("content-encoding"), "gzip");
  assert.ok((await js.text()).length > 1000); // fetch decompresses
  const etag = js.headers.get("etag");
  assert.ok(etag);
  const again = await fetch(`${base}/app.js`, { headers: { "accept-encoding": "gzip", "if-none-match": etag } });
  assert.equal(again.status, 304);

  const css = await fetch(`${base}/app.css`, { headers: { "accept-encoding": "identity" } });
  assert.equal(css.headers.get("content-type"), "text/css; charset=utf-8");
  assert.equal(css.headers.get("content-encoding"), null);

  const health = await fetch(`${base}/health`);
  assert.equal(health.status, 200);
});

test("a message's answer streams in token by token and is stored", async () => {
  await page.goto(`${base}/`);
  await page.waitForFunction(() => /gateway \S+/.test(document.getElementById("gateway")?.textContent ?? ""));
  assert.equal(await page.textContent("#title"), "New chat");
  assert.equal(await page.isVisible("#banner"), false, await page.textContent("#banner"));

  await send("Count for me #tokens=20 #delay=50");
  // Watch the answer grow: at least two different partial texts before it is complete.
  const partial = new Set();
  const deadline = Date.now() + WAIT;
  while (Date.now() < deadline) {
    const el = page.locator("#messages li.assistant").last();
    if ((await el.count()) === 0) {
      await page.waitForTimeout(10);
      continue;
    }
    const [text, cls] = await Promise.all([el.locator(".body").textContent(), el.getAttribute("class")]);
    if (!cls.includes("streaming")) break;
    if (text && text !== ANSWER) {
      assert.ok(ANSWER.startsWith(text), `partial answer ${JSON.stringify(text)}`);
      partial.add(text);
    }
    await page.waitForTimeout(20);
  }
  assert.ok(partial.size >= 2, `saw ${partial.size} intermediate states: ${[...partial].join(" | ")}`);
  await waitIdle();
  assert.equal(await page.textContent(assistantBody), ANSWER);
  await page.screenshot({ path: join(SHOTS, "web-chat-streamed.png") });
  assert.match(await page.textContent("#messages li.assistant:last-child .meta"), /20 out/);
  assert.ok(sessionInUrl(), `the session is in the URL: ${page.url()}`);
  // The new session is listed and selected.
  await page.waitForSelector("#sessions li.active");
  assert.match(await page.textContent("#sessions li.active"), /Count for me/);
});

test("after a reload the session's history is there", async () => {
  const id = sessionInUrl();
  await page.reload();
  await page.waitForSelector("#messages li.assistant");
  assert.deepEqual(await texts("#messages li .body"), ["Count for me #tokens=20 #delay=50", ANSWER]);
  assert.equal(sessionInUrl(), id);
  assert.match(await page.textContent("#title"), /Count for me/);

  // One more turn in the same session.
  await send("hi");
  await waitIdle();
  assert.equal(await page.textContent(assistantBody), "echo: hi");
  assert.equal(await page.locator("#messages li.msg").count(), 4);
});

test("sessions can be switched from the list", async () => {
  const first = sessionInUrl();
  await page.click("#new-chat");
  assert.equal(await page.locator("#messages li").count(), 0);
  await send("second session");
  await waitIdle();
  assert.equal(await page.textContent(assistantBody), "echo: second session");
  const second = sessionInUrl();
  assert.ok(second && second !== first);
  await page.waitForFunction(() => document.querySelectorAll("#sessions li").length === 2);

  await page.click(`#sessions li[data-id="${first}"] button`);
  await page.waitForFunction(() => document.querySelectorAll("#messages li.msg").length === 4);
  assert.equal(sessionInUrl(), first);
  assert.equal(await page.textContent(assistantBody), "echo: hi");
});

test("reset empties the session, also after a reload", async () => {
  await page.click("#reset");
  await page.waitForFunction(() => document.querySelectorAll("#messages li").length === 0);
  assert.match(await page.textContent("#banner"), /4 messages removed/);
  await page.reload();
  await page.waitForFunction(() => document.getElementById("title")?.textContent !== "…");
  await page.waitForTimeout(300); // GetHistory has answered by now; it must be empty
  assert.equal(await page.locator("#messages li").count(), 0);
  assert.match(await page.textContent("#sessions li.active"), /0 messages/);
});

test("the API token hook sends authorization: Bearer when a token is set", async () => {
  await page.click("#settings summary");
  await page.fill("#token", "test-token-123");
  await page.click("#token-form button[type=submit]");
  const req = page.waitForRequest((r) => r.url().includes("openclanker.v1.SessionService/ListSessions"));
  await page.reload();
  assert.equal((await req).headers().authorization, "Bearer test-token-123");
  await page.click("#settings summary");
  await page.click("#token-clear");
  const plain = page.waitForRequest((r) => r.url().includes("openclanker.v1.SessionService/ListSessions"));
  await page.reload();
  assert.equal((await plain).headers().authorization, undefined);
});

test("a provider failure shows a clear error", async () => {
  // In the second session, which has a conversation to show in the screenshot.
  await page.click("#sessions li:not(.active) button");
  await page.waitForFunction(() => document.querySelectorAll("#messages li.msg").length === 2);
  await send("please fail #status=503");
  await page.waitForSelector("#banner:not([hidden])");
  await waitIdle();
  const banner = await page.textContent("#banner-text");
  assert.match(banner, /UNAVAILABLE/, banner);
  assert.match(await page.getAttribute("#messages li.assistant:last-child", "class"), /interrupted/);
  assert.match(await page.textContent("#messages li.assistant:last-child .meta"), /no answer · failed: UNAVAILABLE/);
  await page.screenshot({ path: join(SHOTS, "web-chat.png") });
});

test("a gateway that is gone shows a clear error", async () => {
  gatewayProc.kill("SIGKILL");
  await new Promise((ok) => gatewayProc.once("exit", ok));
  await page.click("#banner-close");
  await send("anyone there?");
  await page.waitForSelector("#banner:not([hidden])");
  assert.match(await page.textContent("#banner-text"), /Cannot reach the gateway/);
  await waitIdle();
  assert.match(await page.textContent("#messages li.assistant:last-child .meta"), /failed: gateway unreachable/);
  await page.screenshot({ path: join(SHOTS, "web-chat-gateway-down.png") });
  assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
});

test("with API tokens on the gateway, the page asks for one and works once it is set", async () => {
  const token = "web-test-token-0123456789abcdef";
  const gw = await startGateway({ OPEN_CLANKER_API_TOKENS: `web:${token}` });
  // Another port is another origin: no token is stored for it yet.
  await page.goto(`${gw.base}/`);
  await page.waitForSelector("#banner:not([hidden])");
  assert.match(await page.textContent("#banner-text"), /API token/);
  assert.equal(await page.getAttribute("#settings", "open"), "", "the token field is shown");
  assert.equal(await page.textContent("#gateway"), "gateway: API token needed");
  await page.screenshot({ path: join(SHOTS, "web-chat-token.png") });
  await page.fill("#token", token);
  await page.click("#token-form button[type=submit]");
  await page.waitForFunction(() => /^gateway \S+ · /.test(document.getElementById("gateway")?.textContent ?? ""));
  await send("hi");
  await waitIdle();
  assert.equal(await page.textContent(assistantBody), "echo: hi");
  await page.reload(); // the token stays in localStorage
  await page.waitForSelector("#messages li.assistant");
  assert.equal(await page.textContent(assistantBody), "echo: hi");
  assert.equal(await page.isVisible("#banner"), false, await page.textContent("#banner"));
  assert.deepEqual(pageErrors, [], "no uncaught errors in the page");
});
