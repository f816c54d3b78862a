// tool_calls.mjs calls tools through a running gptqtool server with the
// official openai package: tool_choice required and a named tool, answered
// whole and streamed (the package's own stream helper and a manual merge of
// the deltas), every call's parsed arguments validated with Ajv, an
// independent JSON Schema validator, against its tool's parameters; then a
// follow-up that sends the calls' results back as tool messages.
//
//	node tool_calls.mjs BASE_URL [one-call]
//
// With one-call, tool_choice required asks for one call a reply
// (parallel_tool_calls false): a server whose model writes calls in its own
// format (Hermes' <tool_call>) after which a tiny random model rarely ends
// the list.
//
// Exits 1 with a message on the first failed check; on success prints one
// line of JSON that summarises what it saw.
import OpenAI from "openai";
import Ajv from "ajv";
import { connect, check } from "./harness.mjs";

const client = connect("tool_calls.mjs");
const oneCall = process.argv[3] === "one-call";
const ajv = new Ajv({ strict: false, allErrors: true });

// Tools as OpenAI's documentation writes them: bounded strings and an enum
// (so that a small model's calls end), integers.
const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Get the current weather in a city.",
      parameters: {
        type: "object",
        properties: { city: { type: "string", maxLength: 12 }, unit: { type: "string", enum: ["c", "f"] } },
        required: ["city", "unit"],
        additionalProperties: false,
      },
    },
  },
  {
    type: "function",
    function: {
      name: "add",
      description: "Add two integers.",
      strict: true,
      parameters: {
        type: "object",
        properties: { a: { type: "integer" }, b: { type: "integer" } },
        required: ["a", "b"],
        additionalProperties: false,
      },
    },
  },
];
const validators = Object.fromEntries(tools.map((t) => [t.function.name, ajv.compile(t.function.parameters)]));

// checkCalls checks a message that calls tools: content null, ids of
// OpenAI's form, names among allowed, arguments that parse as JSON and
// pass Ajv against the tool's parameters.
function checkCalls(what, message, allowed, one) {
  check(message.content === null, `${what}: content null beside tool_calls`, message.content);
  check(Array.isArray(message.tool_calls) && message.tool_calls.length > 0, `${what}: tool_calls`, message);
  check(!one || message.tool_calls.length === 1, `${what}: one call`, message.tool_calls);
  for (const call of message.tool_calls) {
    check(/^call_[A-Za-z0-9]{24}$/.test(call.id), `${what}: the call's id`, call.id);
    check(call.type === "function", `${what}: the call's type`, call.type);
    check(allowed.includes(call.function.name), `${what}: a call of ${allowed}`, call.function.name);
    let args;
    try {
      args = JSON.parse(call.function.arguments);
    } catch (e) {
      throw new Error(`${what}: arguments ${JSON.stringify(call.function.arguments)} are not JSON: ${e.message}`);
    }
    const validate = validators[call.function.name];
    check(validate(args), `${what}: ${call.function.name}(${call.function.arguments}) fails its parameters: ${ajv.errorsText(validate.errors)}`);
  }
}

// sameCalls checks that two messages call the same functions with the
// same arguments (the ids are random).
function sameCalls(what, a, b) {
  const names = (m) => JSON.stringify((m.tool_calls || []).map((c) => [c.function.name, c.function.arguments]));
  check(names(a) === names(b), `${what}: ${names(a)} streamed, ${names(b)} whole`);
}

async function main() {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  const model = models[0].id;
  const summary = { ok: false, calls: 0, lengths: 0, streamed: 0 };
  const user = { role: "user", content: "What is the weather in Paris, and what is 2 plus 3?" };

  // tool_choice required, whole: n sampled choices.
  const required = { model, messages: [user], tools, tool_choice: "required", temperature: 1, seed: 2, n: 3, max_tokens: 100 };
  if (oneCall) required.parallel_tool_calls = false;
  const whole = await client.chat.completions.create(required);
  check(whole.choices.length === 3, "required: three choices", whole.choices.length);
  let first = null;
  for (const c of whole.choices) {
    if (c.finish_reason === "length") {
      summary.lengths++;
      continue;
    }
    check(c.finish_reason === "tool_calls", "required: finish_reason", c.finish_reason);
    checkCalls(`required: choice ${c.index}`, c.message, ["get_weather", "add"], oneCall);
    summary.calls += c.message.tool_calls.length;
    first ??= c;
  }
  check(first !== null, "required: no choice called a tool");

  // The same, streamed, merged by hand as OpenAI's documentation shows.
  const merged = whole.choices.map(() => ({ content: null, tool_calls: [], finish: null }));
  for await (const chunk of await client.chat.completions.create({ ...required, stream: true })) {
    for (const c of chunk.choices) {
      const m = merged[c.index];
      if (c.delta.content) m.content = (m.content ?? "") + c.delta.content;
      for (const d of c.delta.tool_calls ?? []) {
        if (d.id) {
          check(d.index === m.tool_calls.length && d.function.arguments === "", "stream: a call's first delta", d);
          m.tool_calls.push({ id: d.id, type: d.type, function: { name: d.function.name, arguments: "" } });
        } else {
          m.tool_calls[d.index].function.arguments += d.function.arguments;
        }
      }
      if (c.finish_reason) m.finish = c.finish_reason;
    }
  }
  for (const c of whole.choices) {
    const m = merged[c.index];
    check(m.finish === c.finish_reason, `required stream: choice ${c.index}'s finish_reason`, [m.finish, c.finish_reason]);
    if (c.finish_reason === "tool_calls") {
      checkCalls(`required stream: choice ${c.index}`, m, ["get_weather", "add"], oneCall);
      sameCalls(`required stream: choice ${c.index}`, m, c.message);
      summary.streamed++;
    }
  }

  // A named tool, streamed with the package's helper (which parses a
  // strict tool's arguments as each call ends), and whole.
  const named = { model, messages: [user], tools, tool_choice: { type: "function", function: { name: "add" } }, temperature: 1, seed: 4, max_tokens: 150 };
  const parsed = [];
  const stream = client.beta.chat.completions.stream(named);
  stream.on("tool_calls.function.arguments.done", (e) => parsed.push(e));
  const final = await stream.finalChatCompletion();
  const namedWhole = await client.chat.completions.create(named);
  const fc = final.choices[0];
  check(fc.finish_reason === namedWhole.choices[0].finish_reason, "named: finish_reason streamed and whole", [fc.finish_reason, namedWhole.choices[0].finish_reason]);
  if (fc.finish_reason === "length") {
    summary.lengths++;
  } else {
    check(fc.finish_reason === "stop", "named: finish_reason (OpenAI's stop for a named call)", fc.finish_reason);
    checkCalls("named stream", fc.message, ["add"], true);
    checkCalls("named", namedWhole.choices[0].message, ["add"], true);
    sameCalls("named", fc.message, namedWhole.choices[0].message);
    check(parsed.length === 1 && parsed[0].name === "add" && validators.add(parsed[0].parsed_arguments), "named: the helper's parsed arguments", parsed);
    summary.calls++;
    summary.streamed++;
  }

  // The follow-up: the assistant's message as it came, then each call's
  // result as a tool message; the server answers (a call or a reply).
  const results = first.message.tool_calls.map((c) => ({
    role: "tool",
    tool_call_id: c.id,
    content: c.function.name === "add" ? "5" : "22 C, sunny",
  }));
  const follow = await client.chat.completions.create({
    model,
    messages: [user, first.message, ...results],
    tools,
    temperature: 0,
    max_tokens: 100,
  });
  const f = follow.choices[0];
  check(["tool_calls", "stop", "length"].includes(f.finish_reason), "follow-up: finish_reason", f.finish_reason);
  if (f.finish_reason === "tool_calls") checkCalls("follow-up", f.message, ["get_weather", "add"], false);
  if (f.finish_reason === "stop") check(typeof f.message.content === "string" && !f.message.tool_calls, "follow-up: a reply", f.message);
  summary.followUp = f.finish_reason;

  // A tool_choice naming no tool is the client's BadRequestError.
  try {
    await client.chat.completions.create({ model, messages: [user], tools, tool_choice: { type: "function", function: { name: "sub" } } });
    check(false, "a tool_choice naming no tool was accepted");
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError, "an unknown tool: BadRequestError", e.constructor.name);
    check(e.param === "tool_choice.function.name", "an unknown tool: param", e.param);
  }
  summary.ok = true;
  console.log(JSON.stringify(summary));
}

main().catch((e) => {
  console.error(e.stack || e.message || e);
  process.exit(1);
});
