// openai_client.mjs drives a running gptqtool server with the official
// openai package, the client most callers use, to prove that what the server
// sends is what that client expects (its SSE parser, its error classes).
//
//	node openai_client.mjs BASE_URL [API_KEY]
//
// Exits 1 with a message on the first failed check; on success prints one
// line of JSON that summarises what it saw.
import OpenAI from "openai";

const [base, key] = process.argv.slice(2);
if (!base) {
  console.error("usage: node openai_client.mjs BASE_URL [API_KEY]");
  process.exit(2);
}

let checks = 0;
function check(ok, what, got) {
  checks++;
  if (!ok) {
    throw new Error(what + (got === undefined ? "" : `; got ${JSON.stringify(got)}`));
  }
}

// No retries: a request that needs one is a failure the test should show.
const client = new OpenAI({ baseURL: base + "/v1", apiKey: key || "none", maxRetries: 0, timeout: 60_000 });

async function main() {
  // (e) The model list: its first id names the model in every request below,
  // and the server refuses ids it does not serve, so it is checked twice.
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  check(models.length > 0, "models.list() returned no models");
  for (const m of models) {
    check(typeof m.id === "string" && m.id !== "" && m.object === "model", "a model entry lacks id or object", m);
  }
  const model = models[0].id;

  // (a) A non-streamed chat completion.
  const chatReq = {
    model,
    messages: [{ role: "user", content: "Tell me about the sea." }],
    temperature: 0,
    max_tokens: 12,
  };
  const chat = await client.chat.completions.create(chatReq);
  check(chat.object === "chat.completion", "chat: object", chat.object);
  check(chat.choices.length === 1, "chat: one choice", chat.choices.length);
  const content = chat.choices[0].message.content;
  check(typeof content === "string" && content.length > 0, "chat: content is a non-empty string", content);
  check(chat.choices[0].message.role === "assistant", "chat: role", chat.choices[0].message.role);
  const finish = chat.choices[0].finish_reason;
  check(finish === "length" || finish === "stop", "chat: finish_reason", finish);
  const u = chat.usage;
  check(u.prompt_tokens > 0 && u.completion_tokens > 0 && u.completion_tokens <= 12, "chat: usage counts", u);
  check(u.total_tokens === u.prompt_tokens + u.completion_tokens, "chat: total_tokens = prompt + completion", u);
  if (finish === "length") check(u.completion_tokens === 12, "chat: length after max_tokens tokens", u);

  // (b) The same request streamed, with the usage chunk.
  const s1 = await streamChat({ ...chatReq, stream: true, stream_options: { include_usage: true } });
  check(s1.text === content, "stream+usage: deltas equal the non-streamed content", { streamed: s1.text, content });
  check(s1.roleFirst, "stream+usage: the first chunk has delta.role assistant");
  check(s1.finishes.length === 1 && s1.finishes[0] === finish, "stream+usage: one finish_reason, as non-streamed", s1.finishes);
  check(s1.usageChunks.length === 1, "stream+usage: exactly one chunk carries usage", s1.usageChunks.length);
  const uc = s1.usageChunks[0];
  check(uc.choices.length === 0, "stream+usage: the usage chunk has no choices", uc.choices);
  check(uc.index === s1.count - 1, "stream+usage: the usage chunk is the last", { index: uc.index, chunks: s1.count });
  check(JSON.stringify(uc.usage) === JSON.stringify(u), "stream+usage: usage equals the non-streamed usage", uc.usage);

  // (c) Streamed without stream_options: no usage anywhere.
  const s2 = await streamChat({ ...chatReq, stream: true });
  check(s2.text === content, "stream: deltas equal the non-streamed content", { streamed: s2.text, content });
  check(s2.usageChunks.length === 0, "stream: no chunk carries usage without include_usage", s2.usageChunks);
  check(s2.finishes.length === 1 && s2.finishes[0] === finish, "stream: one finish_reason", s2.finishes);

  // The openchat condition field passes through the client's body as is:
  // accepted when valid, a 400 naming the field when not.
  const math = await client.chat.completions.create({ ...chatReq, condition: "Math Correct" });
  check(typeof math.choices[0].message.content === "string", "condition Math Correct: a completion", math.choices[0]);
  const bad = await failure(() => client.chat.completions.create({ ...chatReq, condition: "Poetry" }));
  check(bad instanceof OpenAI.BadRequestError && bad.status === 400 && bad.param === "condition",
    "condition Poetry: BadRequestError 400 with param condition", describe(bad));

  // (d) A text completion, non-streamed and streamed.
  const compReq = { model, prompt: "Once upon a time", temperature: 0, max_tokens: 8 };
  const comp = await client.completions.create(compReq);
  check(comp.object === "text_completion", "completion: object", comp.object);
  const text = comp.choices[0].text;
  check(typeof text === "string" && text.length > 0, "completion: text is a non-empty string", text);
  check(["length", "stop"].includes(comp.choices[0].finish_reason), "completion: finish_reason", comp.choices[0].finish_reason);
  check(comp.usage.total_tokens === comp.usage.prompt_tokens + comp.usage.completion_tokens, "completion: usage sums", comp.usage);
  let streamed = "";
  let compFinish = null;
  for await (const chunk of await client.completions.create({ ...compReq, stream: true })) {
    check(chunk.object === "text_completion", "completion stream: chunk object", chunk.object);
    for (const c of chunk.choices) {
      streamed += c.text;
      if (c.finish_reason) compFinish = c.finish_reason;
    }
  }
  check(streamed === text, "completion stream: texts equal", { streamed, text });
  check(compFinish === comp.choices[0].finish_reason, "completion stream: finish_reason", compFinish);

  // (g) lm-evaluation-harness's loglikelihood request: a batch of token-id
  // prompts, echoed and scored, nothing generated. Each choice gives its
  // prompt's text and one log-probability per prompt token, null for the
  // first, with the token among its alternatives.
  const batch = [
    [1, 415, 5565, 302, 4843, 349, 5465],
    [1, 5713, 3714, 264, 727],
  ];
  const scored = await client.completions.create({ model, prompt: batch, echo: true, logprobs: 1, max_tokens: 0, temperature: 0 });
  check(scored.choices.length === batch.length, "scoring: one choice a prompt", scored.choices.length);
  check(scored.usage.prompt_tokens === batch[0].length + batch[1].length && scored.usage.completion_tokens === 0,
    "scoring: usage counts every prompt token and no completion", scored.usage);
  for (const c of scored.choices) {
    const lp = c.logprobs;
    const n = batch[c.index].length;
    check(lp && lp.token_logprobs.length === n && lp.tokens.length === n && lp.top_logprobs.length === n && lp.text_offset.length === n,
      `scoring: choice ${c.index} has a log-probability per prompt token`, lp);
    check(lp.token_logprobs[0] === null && lp.top_logprobs[0] === null, `scoring: choice ${c.index}: null for the first token`, lp.token_logprobs[0]);
    for (let i = 1; i < n; i++) {
      const v = lp.token_logprobs[i];
      check(typeof v === "number" && v <= 0 && lp.top_logprobs[i][lp.tokens[i]] === v,
        `scoring: choice ${c.index}: token ${i} is among its alternatives with its log-probability`, { v, top: lp.top_logprobs[i] });
    }
    check(c.finish_reason === "length" && c.text.length > 0, `scoring: choice ${c.index}: the prompt's text, finish length`, c);
  }

  // (f) A wrong key is the client's AuthenticationError, streamed or not.
  let authChecked = false;
  if (key) {
    const wrong = new OpenAI({ baseURL: base + "/v1", apiKey: key + "-wrong", maxRetries: 0, timeout: 60_000 });
    for (const [what, call] of [
      ["chat", () => wrong.chat.completions.create(chatReq)],
      ["chat stream", () => wrong.chat.completions.create({ ...chatReq, stream: true })],
      ["models", () => wrong.models.list()],
    ]) {
      const e = await failure(call);
      check(e instanceof OpenAI.AuthenticationError && e.status === 401 && e.code === "invalid_api_key",
        `wrong key (${what}): AuthenticationError 401 invalid_api_key`, describe(e));
    }
    authChecked = true;
  }

  console.log(JSON.stringify({ ok: true, checks, model, chat: content, finish, usage: u, completion: text, authChecked }));
}

// failure returns what call throws, or null when it succeeds.
async function failure(call) {
  try {
    await call();
    return null;
  } catch (e) {
    return e;
  }
}

function describe(e) {
  return e && { name: e.constructor?.name, status: e.status, code: e.code, param: e.param, message: e.message };
}

// streamChat runs a streamed chat completion with for await, as callers do,
// and collects what the chunks carried.
async function streamChat(req) {
  const out = { text: "", finishes: [], usageChunks: [], roleFirst: false, count: 0 };
  const stream = await client.chat.completions.create(req);
  for await (const chunk of stream) {
    check(chunk.object === "chat.completion.chunk", "chunk object", chunk.object);
    if (out.count === 0) out.roleFirst = chunk.choices[0]?.delta?.role === "assistant";
    if (chunk.usage) out.usageChunks.push({ index: out.count, usage: chunk.usage, choices: chunk.choices });
    for (const c of chunk.choices) {
      if (c.delta?.content) out.text += c.delta.content;
      if (c.finish_reason) out.finishes.push(c.finish_reason);
    }
    out.count++;
  }
  return out;
}

main().catch((e) => {
  console.error(`openai_client.mjs: FAIL after ${checks} checks: ${e.stack || e}`);
  process.exit(1);
});
