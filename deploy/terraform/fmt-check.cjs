// `terraform fmt -check` without terraform: hclwrite's Format (the function terraform fmt
// uses), compiled to WebAssembly in the @cdktf/hcl-tools package. Prints each file that is
// not formatted and exits 1 if any.
const { readFileSync, readdirSync, statSync } = require("node:fs");
const { join } = require("node:path");
const { format } = require("@cdktf/hcl-tools");

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return files(path);
    return path.endsWith(".tf") ? [path] : [];
  });
}

async function main() {
  const all = files(process.argv[2] ?? ".");
  let bad = 0;
  for (const file of all) {
    const text = readFileSync(file, "utf8");
    if ((await format(text)) !== text) {
      console.error(`not formatted: ${file}`);
      bad += 1;
    }
  }
  if (bad === 0) console.log(`terraform: ${all.length} files formatted as terraform fmt would`);
  process.exit(bad === 0 ? 0 : 1);
}

main();
