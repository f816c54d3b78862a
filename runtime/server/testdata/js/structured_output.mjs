// structured_output.mjs asks a running gptqtool server for JSON with the
// official openai package's response_format, and validates every answer
// that stopped with Ajv, an independent JSON Schema validator, against the
// schema it sent.
//
//	node structured_output.mjs BASE_URL
//
// Exits 1 with a message on the first failed check; on success prints one
// line of JSON that summarises what it saw.
import OpenAI from "openai";
import Ajv from "ajv";
import { connect, check } from "./harness.mjs";

const client = connect("structured_output.mjs");
const ajv = new Ajv({ strict: false, allErrors: true });

// Schemas as structured-output clients write them: OpenAI's strict form
// (every property required, additionalProperties false, nullable through a
// list of types), a recursive $defs reference, anyOf, enums, bounds and
// patterns (which Ajv matches with JavaScript's own RegExp).
const schemas = {
  event: {
    type: "object",
    properties: {
      name: { type: "string", maxLength: 20 },
      day: { type: "integer" },
      public: { type: "boolean" },
      place: { type: ["string", "null"], maxLength: 12 },
      people: { type: "array", items: { type: "string", maxLength: 10 }, minItems: 1, maxItems: 3 },
    },
    required: ["name", "day", "public", "place", "people"],
    additionalProperties: false,
  },
  tree: {
    $defs: {
      node: {
        type: "object",
        properties: {
          label: { enum: ["a", "b", "c"] },
          kids: { type: "array", items: { $ref: "#/$defs/node" }, maxItems: 2 },
        },
        required: ["label", "kids"],
        additionalProperties: false,
      },
    },
    $ref: "#/$defs/node",
  },
  code: {
    type: "object",
    properties: {
      id: { type: "string", pattern: "^[A-Z]{2}-\\d{3}$" },
      word: { type: "string", pattern: "[aeiou]", maxLength: 6 },
      note: { type: "string", pattern: "^[^\\n]{0,8}(\\n|\u00e9)?$" },
    },
    required: ["id", "word", "note"],
    additionalProperties: false,
  },
  choice: {
    anyOf: [
      { type: "object", properties: { yes: { const: true }, why: { type: "string", maxLength: 8 } }, required: ["yes", "why"], additionalProperties: false },
      { type: "object", properties: { count: { type: "number" } }, required: ["count"], additionalProperties: false },
    ],
  },
};

async function main() {
  const models = [];
  for await (const m of client.models.list()) models.push(m);
  const model = models[0].id;
  const summary = { ok: false, stopped: {}, lengths: {} };
  for (const [name, schema] of Object.entries(schemas)) {
    const validate = ajv.compile(schema);
    const res = await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: `Describe a ${name} as JSON.` }],
      response_format: { type: "json_schema", json_schema: { name, strict: true, schema } },
      temperature: 1,
      seed: 7,
      n: 6,
      max_tokens: 300,
    });
    check(res.choices.length === 6, `${name}: six choices`, res.choices.length);
    summary.stopped[name] = 0;
    summary.lengths[name] = 0;
    for (const c of res.choices) {
      const text = c.message.content;
      if (c.finish_reason === "length") {
        summary.lengths[name]++;
        continue;
      }
      check(c.finish_reason === "stop", `${name}: finish_reason`, c.finish_reason);
      let value;
      try {
        value = JSON.parse(text);
      } catch (e) {
        throw new Error(`${name}: choice ${c.index}: ${JSON.stringify(text)} is not JSON: ${e.message}`);
      }
      check(validate(value), `${name}: choice ${c.index}: ${JSON.stringify(text)} fails the schema: ${ajv.errorsText(validate.errors)}`);
      summary.stopped[name]++;
    }
  }
  // JSON mode, streamed: the deltas make an object (where it stopped).
  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "Reply in JSON." }],
    response_format: { type: "json_object" },
    temperature: 0,
    max_tokens: 200,
    stream: true,
  });
  let text = "";
  let finish = null;
  for await (const chunk of stream) {
    for (const c of chunk.choices) {
      if (c.delta && c.delta.content) text += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  check(finish === "stop" || finish === "length", "json_object stream: finish_reason", finish);
  if (finish === "stop") {
    const v = JSON.parse(text);
    check(typeof v === "object" && v !== null && !Array.isArray(v), "json_object stream: an object", text);
  }
  summary.jsonObjectFinish = finish;
  // A schema the server cannot honour (a lookbehind, which RE2's syntax
  // has not) is the client's BadRequestError.
  let refused = false;
  try {
    await client.chat.completions.create({
      model,
      messages: [{ role: "user", content: "x" }],
      response_format: { type: "json_schema", json_schema: { name: "p", schema: { type: "string", pattern: "(?<=a)b" } } },
    });
  } catch (e) {
    refused = true;
    check(e instanceof OpenAI.BadRequestError, "a lookbehind pattern: BadRequestError", e.constructor.name);
    check(e.param === "response_format.json_schema.schema", "a lookbehind pattern: param", e.param);
    check(e.message.includes("/pattern"), "a lookbehind pattern: the message names /pattern", e.message);
  }
  check(refused, "a lookbehind pattern was accepted");
  summary.ok = true;
  console.log(JSON.stringify(summary));
}

main().catch((e) => {
  console.error(e.message || e);
  process.exit(1);
});
