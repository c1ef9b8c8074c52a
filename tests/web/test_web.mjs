// tests/web/test_web.mjs - the server's web page (web/index.html) in headless Chromium, driven by playwright-core.
// Run by tests/test_web.sh, which starts the servers and passes them in the environment:
//   PW_DIR      where playwright-core is installed (npm install --prefix PW_DIR)
//   CHROMIUM    the browser (/usr/bin/chromium)
//   URL         a server over a 2-node cluster (or one node); NODES: how many nodes its /cluster lists
//   KEY_URL KEY a server started with --api-key KEY (optional)
//   SHOTS       where the screenshots go (build/tests/web)
// Prints "  ok    ..." or "FAIL: ..." for each check (the shell script counts them); exits 1 if any failed.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";

const env = process.env;
const { chromium } = createRequire(env.PW_DIR + "/index.js")("playwright-core");
const URL = env.URL, NODES = Number(env.NODES || 2), SHOTS = env.SHOTS || "build/tests/web";
let failed = 0;
const ok = m => console.log("  ok    " + m);
const bad = m => { failed++; console.log("FAIL: " + m); };
const check = (c, m) => (c ? ok(m) : bad(m));
const sleep = ms => new Promise(r => setTimeout(r, ms));
async function step(name, fn) {  // a step that throws (a timeout, say) is one failure; the others still run
  try { await fn(); } catch (e) { bad(name + ": " + String(e && e.message || e).split("\n")[0]); }
}
async function direct(base, messages, max_tokens, key) {  // the same request, whole and greedy, without the page
  const r = await fetch(base + "/v1/chat/completions", {
    method: "POST", headers: { "Content-Type": "application/json", ...(key ? { Authorization: "Bearer " + key } : {}) },
    body: JSON.stringify({ messages, max_tokens, temperature: 0 }) });
  const j = await r.json();
  return j.choices[0].message.content;
}

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const problems = [];  // script errors and CSP violations on any page
function watch(page) {
  page.on("pageerror", e => problems.push("page error: " + e.message));
  page.on("console", m => { if (m.type() === "error" && /Content.Security.Policy/i.test(m.text())) problems.push(m.text()); });
}
const lastAnswer = page => page.locator("#messages .msg.assistant").last();
async function answer(page, timeout = 20000) {  // waits for the last answer to finish; returns its text and state
  const a = lastAnswer(page);
  await page.waitForFunction(() => {
    const m = [...document.querySelectorAll("#messages .msg.assistant")].pop();
    return m && m.dataset.state !== "streaming";
  }, null, { timeout });
  return { text: await a.locator(".body").textContent(), state: await a.getAttribute("data-state"), el: a };
}

try {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  watch(page);
  const models = await (await fetch(URL + "/v1/models")).json();
  const modelId = models.data[0].id;

  await step("the page loads", async () => {
    const r = await page.goto(URL + "/");
    check(r.status() === 200 && /text\/html/.test(r.headers()["content-type"] || ""), "GET / serves the page (" + r.status() + ")");
    await page.waitForFunction(id => document.querySelector("#model").textContent === id, modelId, { timeout: 5000 });
    ok("the model's name shows: " + modelId);
  });

  await step("the cluster view", async () => {
    await page.waitForFunction(n => document.querySelectorAll("#cluster .node").length === n &&
                               document.querySelector("#cluster-state").textContent === "live", NODES, { timeout: 5000 });
    ok(`the cluster view lists ${NODES} node(s) and is live`);
    const nodes = page.locator("#cluster .node");
    if (NODES > 1) {
      const tr = await page.locator("#cluster .node .badge.transport").allTextContents();
      check(tr.length === NODES - 1 && tr.every(t => t.trim().toLowerCase() === "tcp"), "each link's transport shows: " + tr.join(", "));
      const split = await page.locator("#split").textContent();
      check(split === "tensor", "the split kind shows: " + split);
      const heads = await page.locator("#cluster .node dd.heads").allTextContents();
      check(heads.length === NODES && new Set(heads).size === NODES, "each node's heads show, each different: " + heads.join(" | "));
      const traffic = await nodes.nth(1).locator("dd.traffic").textContent();
      check(/\d+(\.\d+)? (B|KiB|MiB) \/ \d/.test(traffic), "the link's bytes sent / received show: " + traffic);
      const rtt = await nodes.nth(1).locator("dd.rtt").textContent();
      check(/\d (µs|ms)$/.test(rtt), "the link's round trip shows: " + rtt);
    }
    const mem = await page.locator("#cluster .node dd.memory").allTextContents();
    check(mem.length === NODES && mem.every(t => /^\d+(\.\d+)? (KiB|MiB|GiB) \/ \d+(\.\d+)? (MiB|GiB|TiB)$/.test(t)),
          "memory used / offered shows in human units: " + mem.join(" | "));
    check(await page.locator("#cluster .node .bar").count() === NODES, "each node has a memory bar");
    const reason = await page.locator("#reason").textContent();
    check(reason.length > 0, "the split's reason shows: " + reason.slice(0, 60));
  });

  await step("the SSE parser", async () => {  // events split across chunks anywhere, \r\n split in two, comments
    const got = await page.evaluate(() => {
      const out = [], p = new window.tbc.SSE(d => out.push(d));
      const s = 'data: {"a":1}\r\n\r\n: comment\n\ndata: li\nda' + "ta: ne2\n\ndata:[DONE]\n\n";
      for (const c of [s.slice(0, 9), s.slice(9, 14), s.slice(14, 15), s.slice(15, 40), s.slice(40)]) p.push(c);
      return out;
    });
    check(JSON.stringify(got) === JSON.stringify(['{"a":1}', "li\nne2", "[DONE]"]), "SSE lines are parsed across chunk boundaries: " + JSON.stringify(got));
  });

  await step("settings", async () => {
    await page.click("#settings summary");
    await page.fill("#temperature", "0");
    await page.fill("#max-tokens", "120");
    await page.fill("#system", "");
    await page.reload();
    await page.waitForFunction(id => document.querySelector("#model").textContent === id, modelId, { timeout: 5000 });
    const t = await page.inputValue("#temperature"), m = await page.inputValue("#max-tokens");
    check(t === "0" && m === "120", `settings are kept across a reload (temperature ${t}, max tokens ${m})`);
  });

  let first = "";
  await step("a streamed answer", async () => {
    await page.evaluate(() => {  // the answer's length, each time the page changes it
      window.lengths = [];
      new MutationObserver(() => {
        const m = [...document.querySelectorAll("#messages .msg.assistant .body")].pop();
        if (m) window.lengths.push(m.textContent.length);
      }).observe(document.querySelector("#messages"), { childList: true, subtree: true, characterData: true });
    });
    await page.fill("#prompt", "Hi");
    const reqP = page.waitForRequest(r => r.url().endsWith("/v1/chat/completions"));
    await page.click("#send");
    const body = (await reqP).postDataJSON();
    check(body.stream === true && body.temperature === 0 && body.max_tokens === 120 && body.model === modelId &&
          body.messages.length === 1 && body.messages[0].content === "Hi", "the request: streamed, the settings, the model, the message");
    check(await page.textContent("#send") === "Stop" || await lastAnswer(page).getAttribute("data-state") !== "streaming",
          "Send becomes Stop while the answer streams");
    const a = await answer(page);
    first = a.text;
    const steps = new Set(await page.evaluate(() => window.lengths.filter(n => n > 0))).size;
    check(a.state === "done" && first.length > 0, `the answer streamed in: ${first.length} characters`);
    check(steps >= 3, `the answer grew in ${steps} steps`);
    const want = await direct(URL, [{ role: "user", content: "Hi" }], 120);
    check(first === want, "the streamed text equals a whole greedy request's: " + JSON.stringify(first.slice(0, 50)) + "...");
    const st = a.el.locator(".stats");
    const tokens = Number(await st.getAttribute("data-tokens")), tps = Number(await st.getAttribute("data-tps"));
    const line = (await st.textContent()).replace(/\s+/g, " ");
    check(tokens > 0 && tokens <= 120 && tps > 0 && /tok\/s/.test(line) && /first token \d/.test(line),
          "the stats line: " + (await st.locator("span").allTextContents()).join(" · "));
    check(await page.textContent("#send") === "Send", "the button is Send again");
    const users = await page.locator("#messages .msg.user .body").allTextContents();
    check(users.length === 1 && users[0] === "Hi", "the user's message shows");
  });

  await step("a second turn (Enter sends the whole conversation)", async () => {
    await page.fill("#prompt", "Tell me more");
    const reqP = page.waitForRequest(r => r.url().endsWith("/v1/chat/completions"));
    await page.press("#prompt", "Enter");
    const msgs = (await reqP).postDataJSON().messages;
    check(msgs.length === 3 && msgs[1].role === "assistant" && msgs[1].content === first && msgs[2].content === "Tell me more",
          "the history goes along: " + msgs.map(m => m.role).join(", "));
    const a = await answer(page);
    const want = await direct(URL, msgs, 120);
    check(a.state === "done" && a.text === want, "the second answer equals a whole greedy request's");
    await page.fill("#prompt", "line one");
    await page.press("#prompt", "Shift+Enter");
    await page.type("#prompt", "line two");
    check(await page.inputValue("#prompt") === "line one\nline two" && await page.locator("#messages .msg.user").count() === 2,
          "Shift+Enter makes a new line and does not send");
    await page.fill("#prompt", "");
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: SHOTS + "/chat.png" });
    await page.emulateMedia({ colorScheme: "dark" });
    await page.screenshot({ path: SHOTS + "/chat-dark.png" });
    await page.emulateMedia({ colorScheme: "light" });
    console.log("        screenshots: " + SHOTS + "/chat.png, " + SHOTS + "/chat-dark.png");
  });

  await step("Stop", async () => {
    await page.click("#settings summary");
    await page.fill("#max-tokens", "50000");  // within the server's context (60000)
    await page.click("#prompt");
    await page.fill("#prompt", "Tell me a very long story");
    await page.click("#send");
    const a = lastAnswer(page);
    await page.waitForFunction(() => [...document.querySelectorAll("#messages .msg.assistant .body")].pop().textContent.length > 300,
                               null, { timeout: 10000 });
    await page.click("#send");
    await page.waitForFunction(() => document.querySelector("#send").dataset.state === "send", null, { timeout: 3000 });
    const n1 = (await a.locator(".body").textContent()).length;
    await sleep(700);
    const n2 = (await a.locator(".body").textContent()).length;
    check(await a.getAttribute("data-state") === "stopped" && n1 === n2 && await page.textContent("#send") === "Send",
          `Stop ends the answer (${n2} characters, the button is Send again)`);
    check(/stopped/.test(await a.locator(".stats").textContent()), "the stats line says stopped");
    let waiting = "";
    for (let i = 0; i < 50; i++) {  // the server notices the client went away and frees the session
      waiting = ((await (await fetch(URL + "/metrics")).text()).match(/^tbc_requests_waiting (\d+)/m) || [])[1];
      if (waiting === "0") break;
      await sleep(100);
    }
    check(waiting === "0", "the server stopped generating: tbc_requests_waiting " + waiting);
    await page.click("#settings summary");
    await page.fill("#max-tokens", "24");
    await page.click("#prompt");
    await page.fill("#prompt", "And then?");
    await page.press("#prompt", "Enter");
    const b = await answer(page, 15000);
    check(b.state === "done" && b.text.length > 0, "the next message gets an answer: " + JSON.stringify(b.text.slice(0, 40)));
  });

  await step("errors show in the chat", async () => {
    await page.route("**/v1/chat/completions", r => r.fulfill({ status: 200, contentType: "text/event-stream",
      body: 'data: {"choices":[{"index":0,"delta":{"content":"Half an ans"}}]}\n\ndata: {"error":{"message":"the link to node 1 broke","type":"server_error"}}\n\n' }));
    await page.fill("#prompt", "x");
    await page.press("#prompt", "Enter");
    let a = await answer(page, 5000);
    const e1 = await a.el.locator(".err").textContent();
    check(a.state === "error" && a.text === "Half an ans" && /the link to node 1 broke/.test(e1), "an error event in the stream shows: " + e1);
    await page.unroute("**/v1/chat/completions");
    await page.route("**/v1/chat/completions", r => r.fulfill({ status: 503, contentType: "application/json",
      body: '{"error":{"message":"the server is busy: try again shortly","type":"server_error"}}' }));
    await page.fill("#prompt", "y");
    await page.press("#prompt", "Enter");
    a = await answer(page, 5000);
    const e2 = await a.el.locator(".err").textContent();
    check(a.state === "error" && /^HTTP 503: the server is busy/.test(e2) && await page.inputValue("#prompt") === "y",
          "an HTTP error shows (" + e2 + "), the message is back in the box");
    await page.unroute("**/v1/chat/completions");
    await page.fill("#prompt", "");
  });

  await step("New chat", async () => {
    await page.click("#new-chat");
    check(await page.locator("#messages .msg").count() === 0 && await page.isVisible("#empty"), "New chat empties the conversation");
    await page.fill("#prompt", "Hi");
    const reqP = page.waitForRequest(r => r.url().endsWith("/v1/chat/completions"));
    await page.press("#prompt", "Enter");
    check((await reqP).postDataJSON().messages.length === 1, "and the next request starts a new history");
    await answer(page);
  });

  await step("other cluster answers", async () => {  // fields the server may add, a pipeline, RDMA, a node down, fields missing
    const c = { split: "pipeline", reason: "auto: pipeline", parallel: 4, busy: 1, queued: 2, tokens_per_second: 12.5, nodes: [
      { address: "local", rank: 0, layers: [0, 3] },
      { address: "10.0.0.2:7000", name: "b", rank: 1, layers: [3, 5], heads: [0, 8], transport: "rdma", up: false,
        weight_bytes: 1610612736, kv_bytes: 0, memory_offered: 8589934592, note: "left out: too little memory" },
      {}] };
    await page.route("**/cluster", r => r.fulfill({ contentType: "application/json", body: JSON.stringify(c) }));
    await page.waitForFunction(() => document.querySelectorAll("#cluster .node").length === 3, null, { timeout: 5000 });
    const slots = await page.textContent("#slots"), nodes = page.locator("#cluster .node");
    check(slots === "1 busy of 4 · 2 queued" && await page.isVisible("#slots"), "slots busy / queued show when present: " + slots);
    check(await page.textContent("#split") === "pipeline" && await page.locator("#cluster dd.heads").count() === 0 &&
          (await page.locator("#cluster dd.layers").allTextContents()).join(" | ") === "0–2 | 3–4 | —",
          "a pipeline split shows each node's layers (and no heads)");
    check(await nodes.nth(1).locator(".badge.transport").textContent() === "rdma" && await nodes.nth(1).locator(".badge.off").isVisible() &&
          await nodes.nth(1).locator("dd.memory").textContent() === "1.50 GiB / 8.00 GiB" &&
          await nodes.nth(1).locator(".note").textContent() === "left out: too little memory",
          "an RDMA link, a node down, its memory and its note show");
    check(await nodes.nth(2).locator("dd.memory").textContent() === "—" && await nodes.nth(0).locator("dd.memory").textContent() === "—",
          "missing fields show as —");
    await page.unroute("**/cluster");
    await page.waitForFunction(n => document.querySelectorAll("#cluster .node").length === n, NODES, { timeout: 5000 });
    await page.waitForFunction(() => /busy of 1\b/.test(document.querySelector("#slots").textContent), null, { timeout: 5000 });
    check(await page.isVisible("#slots-tile"), "and the real server's slots show again: " + await page.textContent("#slots"));
  });

  await step("server unreachable", async () => {
    await page.route("**/cluster", r => r.abort());
    await page.waitForFunction(() => document.querySelector("#cluster-state").textContent === "server unreachable", null, { timeout: 6000 });
    ok("a failing poll shows: server unreachable");
    await page.unroute("**/cluster");
    await page.waitForFunction(() => document.querySelector("#cluster-state").textContent === "live", null, { timeout: 6000 });
    ok("and live again when the server answers");
  });

  await step("a narrow screen", async () => {
    await page.setViewportSize({ width: 420, height: 800 });
    await page.reload();
    await page.waitForFunction(() => document.querySelectorAll("#cluster .node").length > 0, null, { timeout: 5000 });
    const sum = await page.textContent("#cluster-summary");
    check(!await page.locator("#cluster-box").evaluate(d => d.open) && await page.isVisible("#cluster-summary") &&
          sum.startsWith(NODES + " node"), "on a narrow screen the cluster view starts folded, with a summary: " + sum);
    const box = await page.locator("#cluster").boundingBox(), chat = await page.locator("#chat").boundingBox();
    check(box && chat && box.y < chat.y && box.width > 400, "the cluster view moves above the chat");
    await page.screenshot({ path: SHOTS + "/narrow.png" });
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  if (env.KEY_URL) {
    await step("an API key", async () => {
      const ctx2 = await browser.newContext({ viewport: { width: 1100, height: 700 } });
      const p = await ctx2.newPage();
      watch(p);
      await p.goto(env.KEY_URL + "/");
      await p.waitForSelector("#auth:not([hidden])", { timeout: 5000 });
      check(await p.textContent("#cluster-state") === "API key needed", "without a key the page asks for one");
      await p.fill("#key", "wrong");
      await p.click("#key-save");
      await p.waitForSelector("#auth:not([hidden])", { timeout: 5000 });
      ok("a wrong key: asked again");
      await p.fill("#key", env.KEY);
      await p.click("#key-save");
      await p.waitForFunction(id => document.querySelector("#model").textContent === id &&
                              document.querySelectorAll("#cluster .node").length === 1, modelId, { timeout: 5000 });
      check(await p.isHidden("#auth") && await p.textContent("#split") === "one machine", "with the key: the model and one node show");
      await p.fill("#prompt", "Once upon a time ".repeat(300));
      await p.press("#prompt", "Enter");
      let a = await answer(p);
      const e = await a.el.locator(".err").textContent();
      // (an HTTP 400, or, since a streamed answer's status line has gone before generation starts, an error event)
      check(a.state === "error" && /^HTTP 400: |context/.test(e) && await p.inputValue("#prompt") !== "",
            "a prompt longer than the context: the server's message shows (" + e + "), the message is back in the box");
      await p.fill("#prompt", "Hi");
      await p.press("#prompt", "Enter");
      a = await answer(p);
      check(a.state === "done" && a.text.length > 0, "a message with the key gets an answer");
      await p.reload();
      await p.waitForFunction(id => document.querySelector("#model").textContent === id, modelId, { timeout: 5000 });
      check(await p.isHidden("#auth"), "the key is kept across a reload");
      await ctx2.close();
    });
  }
  check(problems.length === 0, "no script errors or CSP violations" + (problems.length ? ": " + problems.join("; ") : ""));
} catch (e) {
  bad("the browser test stopped: " + (e && e.stack || e));
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
