// harness.mjs is what the client scripts that run against a gptqtool server
// share: the server's URL from the command line, the official openai
// client on it (no retries: a request that needs one is a failure to show),
// and check, which throws on the first failed check.
import OpenAI from "openai";

// connect returns the openai client on the BASE_URL argument of script,
// or exits 2 with its usage where there is none.
export function connect(script) {
  const [base] = process.argv.slice(2);
  if (!base) {
    console.error(`usage: node ${script} BASE_URL`);
    process.exit(2);
  }
  return new OpenAI({ baseURL: base + "/v1", apiKey: "none", maxRetries: 0, timeout: 120_000 });
}

export function check(ok, what, got) {
  if (!ok) {
    throw new Error(what + (got === undefined ? "" : `; got ${JSON.stringify(got)}`));
  }
}
