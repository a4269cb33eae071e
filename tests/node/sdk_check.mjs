// The official Node SDK (openai on npm) against `chatgptes serve`: code written for OpenAI,
// run by changing baseURL. Prints one JSON object of what it saw; tests/test_node_sdk.py
// checks it. Usage: node sdk_check.mjs OPENAI_MODULE_DIR BASE_URL KEY OTHER_PROJECT_KEY
import { createRequire } from "node:module";

const [moduleDir, baseURL, key, otherKey] = process.argv.slice(2);
const require = createRequire(`${moduleDir}/`);
const { OpenAI, toFile, NotFoundError, BadRequestError } = require("openai");

const client = new OpenAI({ baseURL, apiKey: key, maxRetries: 0, timeout: 60_000 });
const other = new OpenAI({ baseURL, apiKey: otherKey, maxRetries: 0, timeout: 60_000 });
const seen = {};

async function status(promise) {
  try {
    await promise;
    return 200;
  } catch (error) {
    return error.status ?? String(error);
  }
}

const ask = [
  { role: "developer", content: "Answer briefly." },
  { role: "user", content: "What is Redis?" },
];
const models = await client.models.list();
seen.models = models.data.map((m) => m.id);

const chat = await client.chat.completions.create({ model: "gpt-4.1-mini", messages: ask });
seen.chat = {
  model: chat.model,
  content: chat.choices[0].message.content,
  finish: chat.choices[0].finish_reason,
  fingerprint: chat.system_fingerprint,
  requestId: chat._request_id,
};

const cut = await client.chat.completions.create({ model: "gpt-4o", messages: ask, max_tokens: 4 });
seen.cut = { finish: cut.choices[0].finish_reason, tokens: cut.usage.completion_tokens };

let streamed = "";
const stream = await client.chat.completions.create({ model: "gpt-4o", messages: ask, stream: true });
for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
seen.streamed = streamed;

const schema = {
  type: "object",
  properties: { name: { type: "string" }, age: { type: "integer" } },
  required: ["name", "age"],
  additionalProperties: false,
};
const structured = await client.chat.completions.create({
  model: "gpt-4o-2024-08-06",
  messages: ask,
  response_format: { type: "json_schema", json_schema: { name: "person", schema, strict: true } },
});
seen.structured = JSON.parse(structured.choices[0].message.content);

const response = await client.responses.create({ model: "gpt-4o", input: "What is Redis?" });
seen.response = { status: response.status, text: response.output_text };
let responseDeltas = "";
const events = [];
const responseStream = await client.responses.create({ model: "gpt-4o", input: "What is Redis?", stream: true });
for await (const event of responseStream) {
  events.push(event.type);
  if (event.type === "response.output_text.delta") responseDeltas += event.delta;
}
seen.responseStream = { first: events[0], last: events.at(-1), text: responseDeltas };

const lines = [0, 1, 2]
  .map((n) => JSON.stringify({
    custom_id: `n${n}`, method: "POST", url: "/v1/chat/completions",
    body: { model: "gpt-3.5-turbo", messages: [{ role: "user", content: `question ${n}` }] },
  }))
  .join("\n");
const file = await client.files.create({ file: await toFile(Buffer.from(lines), "in.jsonl"), purpose: "batch" });
let batch = await client.batches.create({
  input_file_id: file.id, endpoint: "/v1/chat/completions", completion_window: "24h",
});
const deadline = Date.now() + 60_000;
while (!["completed", "failed", "expired", "cancelled"].includes(batch.status) && Date.now() < deadline) {
  await new Promise((resolve) => setTimeout(resolve, 200));
  batch = await client.batches.retrieve(batch.id);
}
const output = await (await client.files.content(batch.output_file_id)).text();
seen.batch = {
  status: batch.status,
  counts: batch.request_counts,
  model: batch.model,
  outputIds: output.trim().split("\n").map((line) => JSON.parse(line).custom_id),
};

const big = [...Array(200).keys()]
  .map((n) => JSON.stringify({
    custom_id: `c${n}`, method: "POST", url: "/v1/chat/completions",
    body: { model: "gpt-4o", messages: [{ role: "user", content: `q ${n}` }] },
  }))
  .join("\n");
const bigFile = await client.files.create({ file: await toFile(Buffer.from(big), "big.jsonl"), purpose: "batch" });
const toCancel = await client.batches.create({
  input_file_id: bigFile.id, endpoint: "/v1/chat/completions", completion_window: "24h",
});
seen.cancel = (await client.batches.cancel(toCancel.id)).status;

const bad = await client.files.create({
  file: await toFile(Buffer.from('{"custom_id": "x", "body": 1}\n'), "bad.jsonl"), purpose: "batch",
});
const failed = await client.batches.create({
  input_file_id: bad.id, endpoint: "/v1/chat/completions", completion_window: "24h",
});
seen.failed = { status: failed.status, line: failed.errors?.data?.[0]?.line };

seen.isolation = {
  batch: await status(other.batches.retrieve(batch.id)),
  file: await status(other.files.retrieve(file.id)),
  listed: (await other.batches.list()).data.length,
};
// An agent loop: runTools calls the function the model asks for, sends its result back,
// and ends with the answer that follows.
const calledWith = [];
function getWeather({ city }) {
  calledWith.push(city);
  return `18 C and sunny in ${city}`;
}
const runner = client.chat.completions.runTools({
  model: "gpt-4o",
  messages: [{ role: "user", content: "What is the weather in Paris? Use getWeather." }],
  tools: [{
    type: "function",
    function: {
      function: getWeather,
      parse: JSON.parse,
      description: "The weather in a city now.",
      parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
    },
  }],
});
seen.runTools = {
  final: await runner.finalContent(),
  calledWith,
  finishes: (await runner.allChatCompletions()).map((c) => c.choices[0].finish_reason),
};

seen.errors = {
  unknownModel: await status(client.chat.completions.create({ model: "gpt-9", messages: ask })),
  tools: await status(client.chat.completions.create({
    model: "gpt-4o", messages: ask, tools: [{ type: "web_search" }],
  })),
  notFound: await status(client.batches.retrieve("batch_nothere")),
  typed: [NotFoundError.name, BadRequestError.name],
};
console.log(JSON.stringify(seen));
