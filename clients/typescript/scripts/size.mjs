// The SDK's size as an app ships it: src/index.ts bundled and minified by esbuild (ES2022,
// tree-shaking nothing away: every export is kept), then gzip -9. Run: npm run size -w @parley/client
import { gzipSync } from "node:zlib";
import { build } from "esbuild";

const result = await build({
  entryPoints: [new URL("../src/index.ts", import.meta.url).pathname],
  bundle: true,
  minify: true,
  format: "esm",
  target: "es2022",
  write: false,
});
const code = result.outputFiles[0].contents;
const gzipped = gzipSync(code, { level: 9 });
console.log(
  `@parley/client: ${code.length} bytes minified, ${gzipped.length} bytes minified + gzip`,
);
