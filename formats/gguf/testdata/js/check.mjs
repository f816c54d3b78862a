// check.mjs runs GGUF files through llama.cpp (the prebuilt CPU build that
// node-llama-cpp ships) for the Go tests of formats/gguf.
//
// Input (stdin), one JSON document:
//   {"threads": 1,
//    "models": [{"path": "/tmp/x.gguf",
//                "context": 128,
//                "greedy": {"prompt": [1, 403], "steps": 66},   // optional
//                "logits": [[1, 403, 407], [1, 22]],             // optional
//                "tokenize": ["Once upon a time"]}]}              // optional
// Output (stdout), one JSON document:
//   {"llama_cpp": "v0.4.0",
//    "models": [{"path": …,
//                "info": {"version", "tensor_count", "metadata": {flattened key: value},
//                         "tensors": [{"name", "dims", "type", "offset"}]},
//                "greedy": [ids generated after the prompt],
//                "logprobs": [[log p(token) for every id of the vocabulary], …],
//                "tokenize": [[ids], …]}]}
// Token ids in, token ids out: nothing depends on text decoding. "tokenize"
// is llama.cpp's tokenizer on plain text (no BOS, special tokens not
// parsed), to compare with Tokenizer.Encode.
//
// The context keeps K and V in fp32 and flash attention off, so that an F32
// file is computed in fp32 throughout.
//
// node-llama-cpp exposes next-token probabilities, not raw logits: with
// temperature 0 its sampler chain is the greedy sampler, which leaves the
// logits untouched, and the addon returns softmax(logits). log p is then
// logits − logsumexp(logits), which the Go side compares with its own
// log-softmax. Probabilities that underflow float32 come back as 0 and are
// written as null.
import {getLlama, LlamaLogLevel, readGgufFileInfo} from "node-llama-cpp";

async function readStdin() {
    const chunks = [];
    for await (const c of process.stdin) chunks.push(c);
    return Buffer.concat(chunks).toString("utf8");
}

function flatten(obj, prefix, out) {
    for (const [k, v] of Object.entries(obj)) {
        const key = prefix ? prefix + "." + k : k;
        if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(v, key, out);
        else out[key] = v;
    }
    return out;
}

function jsonSafe(v) {
    if (typeof v === "bigint") return Number(v);
    if (Array.isArray(v)) return v.map(jsonSafe);
    return v;
}

const req = JSON.parse(await readStdin());
const llama = await getLlama({
    gpu: false, build: "never", skipDownload: true, progressLogs: false,
    logLevel: LlamaLogLevel.error, logger: (level, msg) => process.stderr.write(msg),
    maxThreads: req.threads ?? 0,
});
const out = {llama_cpp: llama.llamaCppRelease.release, models: []};
for (const m of req.models) {
    const res = {path: m.path};
    const info = await readGgufFileInfo(m.path, {logWarnings: false});
    res.info = {
        version: info.version,
        tensor_count: Number(info.tensorCount),
        metadata: Object.fromEntries(Object.entries(flatten(info.metadata, "", {})).map(([k, v]) => [k, jsonSafe(v)])),
        tensors: info.tensorInfo.map((t) => ({name: t.name, dims: t.dimensions.map(Number), type: t.ggmlType, offset: Number(t.offset)})),
    };
    const model = await llama.loadModel({modelPath: m.path, gpuLayers: 0, useMmap: true});
    const ctx = await model.createContext({
        contextSize: m.context ?? 256, batchSize: m.context ?? 256, sequences: 1,
        flashAttention: false, threads: req.threads ?? 0,
        experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
    });
    const seq = ctx.getSequence();
    if (m.tokenize) res.tokenize = m.tokenize.map((text) => Array.from(model.tokenize(text)));
    if (m.greedy) {
        const ids = [];
        for await (const t of seq.evaluate(m.greedy.prompt, {temperature: 0, yieldEogToken: true})) {
            ids.push(t);
            if (ids.length >= m.greedy.steps) break;
        }
        res.greedy = ids;
        await seq.clearHistory();
    }
    if (m.logits) {
        res.logprobs = [];
        for (const prompt of m.logits) {
            const items = prompt.map((t, i) => i === prompt.length - 1 ? [t, {generateNext: {probabilities: true}}] : t);
            const ev = await seq.controlledEvaluate(items);
            const probs = ev[prompt.length - 1].next.probabilities;
            const lp = new Array(probs.size).fill(null);
            for (const [id, p] of probs) lp[id] = p > 0 ? Math.log(p) : null;
            res.logprobs.push(lp);
            await seq.clearHistory();
        }
    }
    await ctx.dispose();
    await model.dispose();
    out.models.push(res);
}
process.stdout.write(JSON.stringify(out));
await llama.dispose();
