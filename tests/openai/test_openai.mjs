// tests/openai/test_openai.mjs - the official OpenAI Node.js client (npm "openai", 6.x) against build/server: models,
// chat and legacy text completions whole and streamed (text, finish_reason, usage), stop sequences, seeds, the error
// classes the client maps statuses to, a streamed request aborted by the client, and two requests at once.
// Prints "  ok    ..." / "FAIL: ..." lines; exits 1 if any failed. Run by tests/test_openai.sh, which starts the servers
// and sets:
//   TBC_URL        base URL of a server with --ctx TBC_CTX (e.g. http://127.0.0.1:8080/v1)
//   TBC_URL_LONG   base URL of a server with a long context (the abort test needs a generation that lasts)
//   TBC_API_KEY    the servers' --api-key
//   TBC_MODEL      the model id the servers report
//   TBC_CTX        the first server's context length
//   OPENAI_NODE_DIR  where the client is installed (DIR/node_modules/openai); unset: import 'openai' as usual
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const dir = process.env.OPENAI_NODE_DIR;
const openai = dir ? await import(pathToFileURL(path.join(dir, 'node_modules', 'openai', 'index.mjs')).href)
                   : await import('openai');
const { default: OpenAI, NotFoundError, AuthenticationError, BadRequestError } = openai;

const env = (name) => {
    const v = process.env[name];
    if (!v) { console.log(`FAIL: ${name} is not set`); process.exit(1); }
    return v;
};
const URL_MAIN = env('TBC_URL'), URL_LONG = env('TBC_URL_LONG'), KEY = env('TBC_API_KEY'), MODEL = env('TBC_MODEL');
const CTX = Number(env('TBC_CTX'));

let passed = 0, failed = 0;
const ok = (m) => { passed++; console.log(`  ok    ${m}`); };
const bad = (m) => { failed++; console.log(`FAIL: ${m}`); };
const check = (cond, m) => (cond ? ok(m) : bad(m));
const show = (s, n = 60) => JSON.stringify(typeof s === 'string' && s.length > n ? s.slice(0, n) + '...' : s);
const describe = (e) => `${e?.constructor?.name ?? typeof e}${e?.status !== undefined ? ` (status ${e.status})` : ''}: ${e?.message ?? e}`;
async function test(name, fn) {  // one group of checks; an exception fails it without stopping the others
    try { await fn(); } catch (e) { bad(`${name}: ${describe(e)}`); }
}

// No retries (a retried request would hide a wrong status), and no request may hang the test.
const client = new OpenAI({ baseURL: URL_MAIN, apiKey: KEY, maxRetries: 0, timeout: 20000 });
const long = new OpenAI({ baseURL: URL_LONG, apiKey: KEY, maxRetries: 0, timeout: 20000 });

const messages = [{ role: 'user', content: 'Once upon a time' }];
const prompt = 'Once upon a time';
const chatText = (choice) => choice.delta?.content ?? '';
const textText = (choice) => choice.text ?? '';

// A stream's chunks gathered: the text, where the finish_reason and the usage came.
async function collect(stream, textOf) {
    const chunks = [];
    for await (const c of stream) chunks.push(c);
    const withChoices = chunks.filter((c) => Array.isArray(c.choices) && c.choices.length > 0);
    const usage = chunks.filter((c) => c.usage);
    const finishes = withChoices.map((c) => c.choices[0].finish_reason).filter((f) => f != null);
    const last = withChoices[withChoices.length - 1];
    return {
        chunks, text: withChoices.map((c) => textOf(c.choices[0])).join(''), usage,
        usageLast: usage.length === 1 && chunks[chunks.length - 1] === usage[0] && usage[0].choices.length === 0,
        finish: last?.choices[0].finish_reason ?? null, nFinish: finishes.length,
        objects: [...new Set(chunks.map((c) => c.object))].join(','),
    };
}
const usageOk = (u, n) => u && u.prompt_tokens > 0 && u.completion_tokens === n && u.total_tokens === u.prompt_tokens + u.completion_tokens;
const usageStr = (u) => (u ? `${u.prompt_tokens}+${u.completion_tokens}=${u.total_tokens}` : String(u));

// Expects fn() to throw an instance of Cls with the given status and the server's error message.
async function expectError(what, Cls, status, fn) {
    let r;
    try {
        r = await fn();
    } catch (e) {
        if (e instanceof Cls && e.status === status && typeof e.message === 'string' && e.error?.message)
            ok(`${what}: ${e.constructor.name} ${e.status} ${show(e.error.message, 70)}`);
        else bad(`${what}: the client threw ${describe(e)}, want ${Cls.name} (${status})`);
        return;
    }
    bad(`${what}: no error, want ${Cls.name} (${status}); got ${show(r, 200)}`);
}
const summary = (r) => { const c = r.choices?.[0]; return `200, finish_reason ${c?.finish_reason}, usage ${usageStr(r.usage)}`; };

// ---- models ----
await test('models.list', async () => {
    const page = await client.models.list();
    const ids = page.data.map((m) => m.id);
    check(ids.includes(MODEL) && page.data.every((m) => m.object === 'model'), `models.list(): ${show(ids.join(','))}`);
});
await test('models.retrieve', async () => {
    const m = await client.models.retrieve(MODEL);  // GET /v1/models/{model}
    check(m.id === MODEL && m.object === 'model', `models.retrieve(): ${show(m.id)}`);
});

// ---- chat completions, whole and streamed ----
let chatWhole = null;
await test('chat whole', async () => {
    const r = await client.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 16 });
    const c = r.choices[0];
    chatWhole = c.message.content;
    check(r.object === 'chat.completion' && typeof r.id === 'string' && c.message.role === 'assistant' &&
          typeof c.message.content === 'string' && c.message.content.length > 0,
          `chat.completions.create: an assistant message ${show(c.message.content)}`);
    check(c.finish_reason === 'length', `chat: finish_reason ${c.finish_reason} (want length)`);
    check(usageOk(r.usage, 16), `chat: usage ${usageStr(r.usage)} (16 completion tokens)`);
});
await test('chat streamed', async () => {
    const s = await client.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 16, stream: true,
                                                     stream_options: { include_usage: true } });
    const g = await collect(s, chatText);
    check(g.objects === 'chat.completion.chunk', `chat streamed: ${g.chunks.length} chunks of '${g.objects}'`);
    check(g.usageLast && usageOk(g.usage[0].usage, 16),
          `chat streamed: one usage chunk, last, with no choices: ${g.usage.length} chunk(s), ${usageStr(g.usage[0]?.usage)}`);
    check(g.finish === 'length' && g.nFinish === 1, `chat streamed: finish_reason ${g.finish} in the last choice chunk only (${g.nFinish})`);
    check(chatWhole !== null && g.text === chatWhole, `chat streamed: the text equals the whole answer: ${show(g.text)}`);
});

await test('chat stream helper', async () => {  // the client's helper: it builds the message from the deltas
    const s = client.chat.completions.stream({ model: MODEL, messages, temperature: 0, max_tokens: 16 });
    let text = '';
    s.on('content', (d) => { text += d; });
    const f = await s.finalChatCompletion();
    const c = f.choices[0];
    check(c.message.role === 'assistant' && c.message.content === chatWhole && text === chatWhole && c.finish_reason === 'length',
          `chat.completions.stream() (the client's helper): finalChatCompletion ${show(c.message.content)}`);
});
await test('content parts', async () => {  // content as an array of text parts, as many clients send it
    const r = await client.chat.completions.create({ model: MODEL, temperature: 0, max_tokens: 16,
        messages: [{ role: 'user', content: [{ type: 'text', text: 'Once upon a ' }, { type: 'text', text: 'time' }] }] });
    check(r.choices[0].message.content === chatWhole, `chat with content parts [{type: 'text'}]: the same answer ${show(r.choices[0].message.content)}`);
});

// ---- legacy text completions, whole and streamed ----
let textWhole = null;
await test('completions whole', async () => {
    const r = await client.completions.create({ model: MODEL, prompt, temperature: 0, max_tokens: 16 });
    const c = r.choices[0];
    textWhole = c.text;
    check(r.object === 'text_completion' && typeof c.text === 'string' && c.text.length > 0, `completions.create: text ${show(c.text)}`);
    check(c.finish_reason === 'length' && usageOk(r.usage, 16), `completions: finish_reason ${c.finish_reason}, usage ${usageStr(r.usage)}`);
});
await test('completions streamed', async () => {
    const s = await client.completions.create({ model: MODEL, prompt, temperature: 0, max_tokens: 16, stream: true,
                                                stream_options: { include_usage: true } });
    const g = await collect(s, textText);
    check(g.usageLast && usageOk(g.usage[0].usage, 16) && g.finish === 'length' && g.nFinish === 1,
          `completions streamed: ${g.chunks.length} chunks, finish_reason ${g.finish}, usage ${usageStr(g.usage[0]?.usage)} last`);
    check(textWhole !== null && g.text === textWhole, `completions streamed: the text equals the whole answer: ${show(g.text)}`);
});

// ---- stop sequences: a string from the greedy answer ends the answer just before it ----
// A stop string from the middle of text, one that first occurs past its start if there is one (a repetitive
// answer may only have one at its start: the answer is then empty); [stop, expected answer].
function stopFrom(text) {
    for (const past of [1, 0])
        for (let k = Math.floor(text.length / 2); k + 3 <= text.length; k++) {
            const stop = text.slice(k, k + 3), i = text.indexOf(stop);
            if (i >= past && stop.trim().length > 0) return [stop, text.slice(0, i)];
        }
    return [text, ''];
}
await test('stop', async () => {
    if (chatWhole === null || textWhole === null) throw new Error('no greedy answers to take a stop string from');
    const [cs, cwant] = stopFrom(chatWhole);
    const r = await client.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 16, stop: [cs, 'zzzzz'] });
    const c = r.choices[0];
    check(c.message.content === cwant && c.finish_reason === 'stop',
          `chat with stop ${show(cs)}: ${show(c.message.content)} (want ${show(cwant)}), finish_reason ${c.finish_reason}`);
    const s = await client.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 16, stop: [cs],
                                                     stream: true });
    const g = await collect(s, chatText);
    check(g.text === cwant && g.finish === 'stop', `streamed chat with stop ${show(cs)}: ${show(g.text)}, finish_reason ${g.finish}`);
    const [ts, twant] = stopFrom(textWhole);
    const t = await client.completions.create({ model: MODEL, prompt, temperature: 0, max_tokens: 16, stop: ts });
    check(t.choices[0].text === twant && t.choices[0].finish_reason === 'stop',
          `completion with stop ${show(ts)}: ${show(t.choices[0].text)} (want ${show(twant)}), finish_reason ${t.choices[0].finish_reason}`);
});

// ---- seeds ----
await test('seed', async () => {
    const gen = async (seed) => (await client.completions.create({ model: MODEL, prompt, temperature: 0.8, max_tokens: 16, seed })).choices[0].text;
    const a = await gen(42), b = await gen(42);
    check(a === b && a.length > 0, `seed 42, temperature 0.8 twice: the same text ${show(a)}`);
    const others = new Set([a, await gen(1), await gen(2), await gen(3)]);
    check(others.size >= 2, `other seeds give other texts (${others.size} distinct of 4)`);
});

// ---- errors: the client's error classes ----
const longPrompt = 'Once upon a time '.repeat(200);  // about 800 tokens: more than the context
await expectError('an unknown model', NotFoundError, 404,
                  () => client.chat.completions.create({ model: 'gpt-9', messages, max_tokens: 4 }));
await expectError('a wrong API key', AuthenticationError, 401, () =>
    new OpenAI({ baseURL: URL_MAIN, apiKey: KEY + 'x', maxRetries: 0, timeout: 20000 })
        .chat.completions.create({ model: MODEL, messages, max_tokens: 4 }));
await expectError('temperature 5', BadRequestError, 400,
                  () => client.chat.completions.create({ model: MODEL, messages, max_tokens: 4, temperature: 5 }));
await expectError(`a prompt longer than the context (${CTX})`, BadRequestError, 400,
                  () => client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: longPrompt }], max_tokens: 4 }));
await expectError(`a prompt longer than the context, streamed: 400 before the stream starts`, BadRequestError, 400, async () => {
    const s = await client.completions.create({ model: MODEL, prompt: longPrompt, max_tokens: 4, stream: true });
    return (await collect(s, textText)).text;
});
await expectError(`max_tokens ${4 * CTX} with a context of ${CTX}`, BadRequestError, 400, async () =>
    summary(await client.completions.create({ model: MODEL, prompt, max_tokens: 4 * CTX, temperature: 0 })));

// ---- a streamed request the client aborts: the server stops it and serves the next one promptly ----
await test('abort', async () => {
    const s = await long.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 50000, stream: true });
    let n = 0;
    try {
        for await (const c of s) {
            if (c.choices?.[0]?.delta?.content !== undefined) n++;
            if (n >= 5) { s.controller.abort(); break; }
        }
    } catch (e) {
        if (!(e instanceof openai.APIUserAbortError)) throw e;
    }
    const t0 = Date.now();
    const r = await long.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 8 }, { timeout: 15000 });
    const ms = Date.now() - t0;
    check(n >= 5 && r.usage?.completion_tokens === 8 && ms < 5000,
          `a stream aborted after ${n} chunks; the next request answered in ${ms} ms (${usageStr(r.usage)})`);
});

// ---- two requests at once ----
await test('concurrent', async () => {
    const [a, b] = await Promise.all([
        client.chat.completions.create({ model: MODEL, messages, temperature: 0, max_tokens: 16 }),
        client.completions.create({ model: MODEL, prompt, temperature: 0, max_tokens: 16 }),
    ]);
    check(a.choices[0].message.content === chatWhole && b.choices[0].text === textWhole && usageOk(a.usage, 16) && usageOk(b.usage, 16),
          'two requests at once (Promise.all): both answered, as when alone');
});

process.exit(failed ? 1 : 0);
