/**
 * Every TypeScript snippet of this package's README and of the project's README type-checks
 * against the sources and runs, with in-memory stand-ins for Kafka and Redis and an
 * OpenAI-compatible server on loopback, and makes the decisions and reports it says it makes
 * (`<!-- emits: decisions=N outcomes=M -->` after the block).
 */

import assert from "node:assert/strict";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import ts from "typescript";

import * as sdk from "../../src/index.js";
import * as testing from "../../src/testing.js";
import { PACKAGE } from "../support/helpers.js";
import { startOpenAIServer, type OpenAIServer } from "../support/openai-server.js";

interface Snippet {
  page: string;
  line: number;
  code: string;
  emits: Record<string, number> | null;
}

const PAGES = [join(PACKAGE, "README.md"), join(PACKAGE, "..", "README.md")];
const BLOCK = /```ts\n([\s\S]*?)```\n(?:<!-- emits: ([^>]*) -->)?/g;

function snippets(): Snippet[] {
  const found: Snippet[] = [];
  for (const page of PAGES) {
    const text = readFileSync(page, "utf8");
    for (const match of text.matchAll(BLOCK)) {
      const emits = match[2] ? Object.fromEntries(match[2].trim().split(/\s+/).map((kv) => [kv.split("=")[0]!, Number(kv.split("=")[1])])) : null;
      found.push({ page, line: text.slice(0, match.index).split("\n").length + 1, code: match[1]!, emits });
    }
  }
  return found;
}

/** What the snippets use without defining: the caller's own code. */
const PRELUDE = `
declare function callModel(path: string, prompt: string): string;
declare const prompt: string;
declare function isGood(text: string): boolean;
declare const messages: import("@outroute/sdk").ChatMessage[];
declare const issueResolved: boolean;
`;

let server: OpenAIServer;
before(async () => {
  server = await startOpenAIServer();
});
after(async () => {
  await server.close();
});

test("the snippets type-check against the sources", () => {
  const found = snippets();
  assert.ok(found.length >= 8, `only ${found.length} snippets`);
  const dir = join(PACKAGE, "build", "snippets");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "prelude.d.ts"), PRELUDE);
  const files = found.map((s, i) => {
    const file = join(dir, `snippet-${i}.ts`);
    writeFileSync(file, `${s.code}\nexport {};\n`);
    return file;
  });
  const program = ts.createProgram([join(dir, "prelude.d.ts"), ...files], {
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ["lib.es2023.d.ts"],
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: ["node"],
    typeRoots: [join(PACKAGE, "node_modules", "@types")],
    baseUrl: PACKAGE,
    paths: { "@outroute/sdk": ["src/index.ts"], "@outroute/sdk/testing": ["src/testing.ts"] },
  });
  const problems = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${d.file.fileName.split("/").pop()}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : "";
    const index = Number(/snippet-(\d+)/.exec(where)?.[1] ?? -1);
    const origin = index >= 0 ? `${found[index]!.page.split("/").slice(-2).join("/")}:${found[index]!.line}` : where;
    return `${origin}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
  });
  assert.deepEqual(problems, []);
});

test("the snippets run and emit what they say", async () => {
  const made: sdk.Router[] = [];
  class LocalRouter extends sdk.Router {
    constructor(options: sdk.RouterOptions) {
      super({
        eventSink: new testing.InMemorySink(),
        snapshotSource: new testing.StaticSnapshotSource(null),
        defaultProvider: new sdk.Provider({ baseUrl: server.baseUrl }),
        logger: sdk.silentLogger,
        ...options,
      });
      made.push(this);
    }
  }
  const names: Record<string, unknown> = {
    ...sdk,
    ...testing,
    Router: LocalRouter,
    console: {
      log: () => undefined,
      assert: (condition: unknown, message?: string) => assert.ok(condition, message ?? "console.assert in a snippet"),
    },
    callModel: (path: string, prompt: string) => `${path} read it. It says: ${prompt}.`,
    prompt: "hello",
    isGood: (text: string) => text.length > 0,
    messages: [{ role: "user", content: "hello" }],
    issueResolved: false,
  };
  const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => (...values: unknown[]) => Promise<void>;
  for (const snippet of snippets()) {
    const where = `${snippet.page.split("/").slice(-2).join("/")}:${snippet.line}`;
    const body = snippet.code.replace(/^import[\s\S]*?from "[^"]+";\n/gm, "");
    const js = ts.transpileModule(body, { compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext } }).outputText;
    const start = made.length;
    await new AsyncFunction(...Object.keys(names), js)(...Object.values(names)).catch((error: Error) => {
      throw new Error(`${where}: ${error.stack}`);
    });
    const routers = made.slice(start);
    const emitted = {
      decisions: routers.reduce((n, r) => n + r.stats().decisions, 0),
      outcomes: routers.reduce((n, r) => n + r.stats().reports, 0),
    };
    if (snippet.emits !== null) {
      const got = Object.fromEntries(Object.keys(snippet.emits).map((k) => [k, emitted[k as keyof typeof emitted]]));
      assert.deepEqual(got, snippet.emits, where);
    }
    for (const r of routers) await r.close(100);
  }
});
