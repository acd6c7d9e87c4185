// Builds dist/: one CommonJS implementation (dist/cjs) and, for each public entry (the package and its subpaths),
// a thin ESM entry (dist/esm) that re-exports it, the way node-postgres ships. One implementation means one
// BaseModel and one set of error classes per process, whichever way a host imports the package.
import { execFileSync } from 'node:child_process'
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const dist = join(root, 'dist')
rmSync(dist, { recursive: true, force: true })

execFileSync(
  process.execPath,
  [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')],
  {
    stdio: 'inherit',
  },
)
writeFileSync(join(dist, 'cjs/package.json'), JSON.stringify({ type: 'commonjs' }) + '\n')

// One ESM wrapper and one .d.ts per entry of package.json's `exports` (`.` is dist/esm/index.js, `./crypto` is
// dist/esm/crypto.js, ...), each re-exporting the CommonJS module of the same name.
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'))
const entries = Object.entries(pkg.exports)
  .filter(([subpath]) => subpath !== './package.json')
  .map(([subpath, conditions]) => {
    const match = /^\.\/dist\/esm\/([\w-]+)\.js$/.exec(conditions.import?.default ?? '')
    if (!match) throw new Error(`exports["${subpath}"].import.default is not a file of dist/esm`)
    const entry = match[1]
    const expected = {
      import: { types: `./dist/esm/${entry}.d.ts`, default: `./dist/esm/${entry}.js` },
      require: { types: `./dist/cjs/${entry}.d.ts`, default: `./dist/cjs/${entry}.js` },
    }
    if (JSON.stringify(conditions) !== JSON.stringify(expected)) {
      throw new Error(`exports["${subpath}"] should be ${JSON.stringify(expected)}`)
    }
    return entry
  })

// Hosts that resolve modules the old way (TypeScript's `node10`) ignore `exports`: typesVersions gives them each
// subpath's types.
for (const entry of entries.filter((name) => name !== 'index')) {
  const mapped = pkg.typesVersions?.['*']?.[entry]
  if (JSON.stringify(mapped) !== JSON.stringify([`./dist/cjs/${entry}.d.ts`])) {
    throw new Error(`typesVersions["*"]["${entry}"] should be ["./dist/cjs/${entry}.d.ts"]`)
  }
}

const require = createRequire(import.meta.url)
mkdirSync(join(dist, 'esm'), { recursive: true })
writeFileSync(join(dist, 'esm/package.json'), JSON.stringify({ type: 'module' }) + '\n')
const counts = []
for (const entry of entries) {
  const names = Object.keys(require(join(dist, `cjs/${entry}.js`))).filter((name) => name !== '__esModule')
  if (names.length === 0) throw new Error(`The CJS build of ${entry} exports nothing`)
  writeFileSync(
    join(dist, `esm/${entry}.js`),
    `// ESM entry: re-exports the CommonJS implementation, so both entries share one copy of the library.\n` +
      `import lib from '../cjs/${entry}.js'\n\n` +
      names.map((name) => `export const ${name} = lib.${name}`).join('\n') +
      '\n',
  )
  writeFileSync(join(dist, `esm/${entry}.d.ts`), `export * from '../cjs/${entry}.js'\n`)
  counts.push(`${entry} ${names.length}`)
}

const cli = join(dist, 'cjs/cli/main.js')
if (existsSync(cli)) {
  const text = readFileSync(cli, 'utf8')
  if (!text.startsWith('#!')) writeFileSync(cli, `#!/usr/bin/env node\n${text}`)
  chmodSync(cli, 0o755)
}
console.log(`built dist/cjs and dist/esm (runtime exports: ${counts.join(', ')})`)
