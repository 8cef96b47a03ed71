// Builds the chat page into dist/: index.html, app.js and app.css, each also gzipped (.gz), which
// the gateway embeds (server/src/web.rs). `node build.mjs --check` builds into a temporary folder
// and fails when dist/ differs (the .gz files are compared by their decompressed content, since
// zlib versions may compress differently).
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync, gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const here = new URL(".", import.meta.url).pathname;
const check = process.argv.includes("--check");
const dist = join(here, "dist");
const out = check ? await mkdtemp(join(tmpdir(), "oc-web-dist-")) : dist;

if (!check) await rm(dist, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await esbuild.build({
  absWorkingDir: here,
  entryPoints: { app: "src/main.ts" },
  bundle: true,
  minify: true,
  format: "esm",
  target: ["es2022", "chrome111", "firefox111", "safari16"],
  outdir: out,
  charset: "utf8",
  legalComments: "eof",
  sourcemap: false,
  logLevel: "warning",
});
const html = await readFile(join(here, "src/index.html"), "utf8");
await writeFile(join(out, "index.html"), html.replace(/\n\s*/g, "\n"));

const files = ["index.html", "app.js", "app.css"];
for (const f of files) {
  const raw = await readFile(join(out, f));
  await writeFile(join(out, `${f}.gz`), gzipSync(raw, { level: 9 }));
}

if (check) {
  const problems = [];
  const want = (await readdir(out)).sort();
  const have = (await readdir(dist).catch(() => [])).sort();
  if (want.join() !== have.join()) problems.push(`files differ: built [${want}], committed [${have}]`);
  for (const f of files) {
    const built = await readFile(join(out, f));
    const committed = await readFile(join(dist, f)).catch(() => Buffer.alloc(0));
    if (!built.equals(committed)) problems.push(`${f} differs`);
    const gz = await readFile(join(dist, `${f}.gz`)).catch(() => null);
    if (!gz || !gunzipSync(gz).equals(built)) problems.push(`${f}.gz does not hold ${f}`);
  }
  await rm(out, { recursive: true, force: true });
  if (problems.length) {
    console.error(`web/dist is stale (${problems.join("; ")}): run \`cd web && npm ci && npm run build\` and commit web/dist`);
    process.exit(1);
  }
  console.log("web/dist matches a fresh build");
} else {
  for (const f of files) {
    const raw = (await readFile(join(out, f))).length;
    const gz = (await readFile(join(out, `${f}.gz`))).length;
    console.log(`dist/${f}: ${raw} bytes, ${gz} gzipped`);
  }
}
