// reasoning.mjs reads a reasoning model's replies through a running
// gptqtool server with the official openai package: reasoning_content
// beside content, whole and streamed (the deltas merged by hand: the
// package's stream helper assigns an unknown delta field rather than
// appending to it), the same for the same seed; usage's reasoning tokens;
// and a follow-up whose history carries the reasoning back. The server's
// model must reason (its template opens <think> under enable_thinking),
// and CLOSE_ID is the token id of its </think>, which a logit bias makes
// likely so that a tiny random model closes the block.
//
//	node reasoning.mjs BASE_URL CLOSE_ID
//
// Exits 1 with a message on the first failed check; on success prints one
// line of JSON that summarises what it saw.
import { connect, check } from "./harness.mjs";

const client = connect("reasoning.mjs");
const closeID = process.argv[3];
check(closeID !== undefined, "usage: node reasoning.mjs BASE_URL CLOSE_ID");

async function main() {
  const summary = { ok: false, reasoned: 0, answered: 0, streamed: 0, reasoningTokens: 0 };
  const model = (await client.models.list()).data[0].id;
  const user = { role: "user", content: "What is 2+2?" };
  const request = {
    model,
    messages: [user],
    chat_template_kwargs: { enable_thinking: true },
    logit_bias: { [closeID]: 16 },
    n: 3,
    seed: 7,
    temperature: 1,
    max_tokens: 40,
  };
  const whole = await client.chat.completions.create(request);
  check(whole.choices.length === 3, "three choices", whole.choices.length);
  for (const c of whole.choices) {
    const m = c.message;
    check(m.reasoning_content === undefined || (typeof m.reasoning_content === "string" && m.reasoning_content !== ""), `choice ${c.index}: reasoning_content`, m);
    check(m.content === null || typeof m.content === "string", `choice ${c.index}: content`, m);
    check(!(m.reasoning_content ?? "").includes("</think>") && !(m.content ?? "").startsWith("</think>"), `choice ${c.index}: a marker left in`, m);
    if (m.reasoning_content) summary.reasoned++;
    if (m.content) summary.answered++;
  }
  const details = whole.usage.completion_tokens_details;
  check(details && details.reasoning_tokens > 0 && details.reasoning_tokens <= whole.usage.completion_tokens, "usage's reasoning tokens", whole.usage);
  summary.reasoningTokens = details.reasoning_tokens;

  // Streamed: the same replies, reasoning deltas before content ones.
  const merged = whole.choices.map(() => ({ reasoning: undefined, content: "", finish: null }));
  let usage = null;
  for await (const chunk of await client.chat.completions.create({ ...request, stream: true, stream_options: { include_usage: true } })) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      const m = merged[c.index];
      check(m.finish === null, `stream: choice ${c.index}: a chunk after its finish_reason`, chunk);
      if (c.delta.reasoning_content !== undefined) {
        check(m.content === "", `stream: choice ${c.index}: reasoning after content`, chunk);
        m.reasoning = (m.reasoning ?? "") + c.delta.reasoning_content;
      }
      if (c.delta.content) m.content += c.delta.content;
      if (c.finish_reason) m.finish = c.finish_reason;
    }
  }
  for (const c of whole.choices) {
    const m = merged[c.index];
    check(m.reasoning === c.message.reasoning_content, `stream: choice ${c.index}'s reasoning`, [m.reasoning, c.message.reasoning_content]);
    check(m.content === (c.message.content ?? ""), `stream: choice ${c.index}'s content`, [m.content, c.message.content]);
    check(m.finish === c.finish_reason, `stream: choice ${c.index}'s finish_reason`, [m.finish, c.finish_reason]);
    summary.streamed++;
  }
  check(usage && JSON.stringify(usage) === JSON.stringify(whole.usage), "stream: usage", [usage, whole.usage]);

  // A follow-up with the reasoning in history (the template decides what
  // it keeps); and reasoning_format none leaves the block in content.
  const answer = whole.choices.find((c) => c.message.content !== null) ?? whole.choices[0];
  const follow = await client.chat.completions.create({
    model,
    messages: [user, { role: "assistant", content: answer.message.content ?? "", reasoning_content: answer.message.reasoning_content }, { role: "user", content: "And 3+3?" }],
    max_tokens: 4,
  });
  check(follow.choices.length === 1, "follow-up", follow);
  const raw = await client.chat.completions.create({ ...request, reasoning_format: "none" });
  for (const c of raw.choices) {
    check(c.message.reasoning_content === undefined, `reasoning_format none: choice ${c.index}`, c.message);
    if (whole.choices[c.index].message.content !== null) {
      check(c.message.content.includes("</think>"), `reasoning_format none: choice ${c.index} keeps </think>`, c.message);
    }
  }
  summary.ok = true;
  console.log(JSON.stringify(summary));
}

main().catch((e) => {
  console.error("reasoning.mjs:", e.message);
  process.exit(1);
});
