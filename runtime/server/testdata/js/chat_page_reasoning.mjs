// chat_page_reasoning.mjs drives the server's chat page (GET /) in a real
// headless Chromium against a reasoning model (its template opens <think>):
// the thinking streams into its own box before the answer, both equal to
// what the API returns for the same greedy request, and the next turn's
// history carries the answer alone, as OpenAI's clients send it. CLOSE_ID
// is the token id of the model's </think>: the test adds a logit bias for it
// to the page's requests on their way out (the page has no such setting),
// so that a tiny random model ends its thinking and answers.
//
//	node chat_page_reasoning.mjs BASE_URL CLOSE_ID
//
// Exits 1 with a message on the first failed check; on success prints one
// line of JSON that summarises what it saw.
import { chromium } from "playwright-core";

const [base, closeID] = process.argv.slice(2);
if (!base || !closeID) {
  console.error("usage: node chat_page_reasoning.mjs BASE_URL CLOSE_ID");
  process.exit(2);
}
const TIMEOUT = 60_000;
const MAX_TOKENS = 24;
const BIAS = { [closeID]: 14 };

let checks = 0;
function check(ok, what, got) {
  checks++;
  if (!ok) {
    throw new Error(what + (got === undefined ? "" : `; got ${JSON.stringify(got)}`));
  }
}

// expected is the API's non-streamed greedy reply to messages.
async function expected(messages) {
  const resp = await fetch(base + "/v1/chat/completions", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ messages, max_tokens: MAX_TOKENS, temperature: 0, logit_bias: BIAS }),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${text}`);
  const m = JSON.parse(text).choices[0].message;
  return { reasoning: m.reasoning_content ?? "", content: m.content ?? "" };
}

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const chatBodies = [];
const pageErrors = [];
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on("request", (req) => {
    if (new URL(req.url()).pathname === "/v1/chat/completions") chatBodies.push(req.postDataJSON());
  });
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  // The request event above sees the page's own body; the route adds the
  // bias on the way out.
  await page.route("**/v1/chat/completions", (route) =>
    route.continue({ postData: JSON.stringify({ ...route.request().postDataJSON(), logit_bias: BIAS }) }));
  await page.goto(base + "/");
  await page.fill("#max-tokens", String(MAX_TOKENS));
  await page.fill("#temperature", "0");

  const turns = [];
  const seen = [];
  for (const [i, q] of ["What is 2+2?", "And 3+3?"].entries()) {
    await page.fill("#prompt", q);
    await page.press("#prompt", "Enter");
    const bot = page.locator("#messages .msg.assistant").nth(i);
    await bot.and(page.locator("[data-finish]")).waitFor();
    const want = await expected([...turns, { role: "user", content: q }]);
    check(want.reasoning !== "", `turn ${i + 1}: the API's reply reasons (the template opens <think>)`, want);
    const boxes = page.locator("#messages .msg.reasoning");
    check(await boxes.count() === i + 1, `turn ${i + 1}: one thinking box a reply`, await boxes.count());
    const box = boxes.nth(i);
    const thought = await box.locator("div").textContent();
    check(thought === want.reasoning, `turn ${i + 1}: the box shows reasoning_content exactly`, { page: thought, api: want.reasoning });
    check(await box.locator("summary").textContent() === "Thinking", `turn ${i + 1}: the box is labelled`);
    // Open while the thinking comes, folded once the answer begins.
    const open = await box.evaluate((el) => el.open);
    check(open === (want.content === ""), `turn ${i + 1}: the box is ${want.content === "" ? "open (no answer yet)" : "folded (answered)"}`, open);
    // The box comes right before its answer, which holds the content alone.
    check(await box.evaluate((el) => el.nextElementSibling.classList.contains("assistant")), `turn ${i + 1}: the box precedes its answer`);
    const answer = await bot.textContent();
    check(answer === want.content, `turn ${i + 1}: the answer shows content alone`, { page: answer, api: want.content });
    check(/tok\/s$/.test(await page.locator("#rate").textContent()), `turn ${i + 1}: #rate counts the reasoning's tokens`);
    turns.push({ role: "user", content: q }, { role: "assistant", content: want.content });
    seen.push({ reasoning: thought, content: answer });
  }
  check(chatBodies.length === 2, "two chat requests", chatBodies.length);
  check(JSON.stringify(chatBodies[1].messages) === JSON.stringify([...turns.slice(0, 2), { role: "user", content: "And 3+3?" }]),
    "turn 2 sent the history without the reasoning", chatBodies[1].messages);
  check(chatBodies.every((b) => !("condition" in b)), "no condition sent: the model's template", chatBodies);
  check(pageErrors.length === 0, "no uncaught errors in the page", pageErrors);
  console.log(JSON.stringify({ ok: true, checks, turns: seen }));
} catch (e) {
  console.error(`chat_page_reasoning.mjs: FAIL after ${checks} checks: ${e.stack || e}`);
  if (pageErrors.length) console.error("page errors:", pageErrors);
  process.exitCode = 1;
} finally {
  await browser.close();
}
