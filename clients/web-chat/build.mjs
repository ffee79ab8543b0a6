// Bundles the web chat into dist/ (app.js, index.html, style.css): what `web_chat.dir` serves.
import { copyFileSync, mkdirSync } from "node:fs";
import { build } from "esbuild";

mkdirSync("dist", { recursive: true });
await build({
  entryPoints: ["src/main.ts"],
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: true,
  outfile: "dist/app.js",
});
for (const file of ["index.html", "style.css"]) copyFileSync(file, `dist/${file}`);
console.log("web chat built in clients/web-chat/dist");
