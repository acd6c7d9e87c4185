// Builds dist/: one CommonJS implementation (dist/cjs) and a thin ESM entry (dist/esm) that re-exports it, the
// way node-postgres ships. One implementation means one BaseModel and one set of error classes per process,
// whichever way a host imports the package.
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

const require = createRequire(import.meta.url)
const names = Object.keys(require(join(dist, 'cjs/index.js'))).filter((name) => name !== '__esModule')
if (names.length === 0) throw new Error('The CJS build exports nothing')

mkdirSync(join(dist, 'esm'), { recursive: true })
writeFileSync(join(dist, 'esm/package.json'), JSON.stringify({ type: 'module' }) + '\n')
writeFileSync(
  join(dist, 'esm/index.js'),
  `// ESM entry: re-exports the CommonJS implementation, so both entries share one copy of the library.\n` +
    `import lib from '../cjs/index.js'\n\n` +
    names.map((name) => `export const ${name} = lib.${name}`).join('\n') +
    '\n',
)
writeFileSync(join(dist, 'esm/index.d.ts'), `export * from '../cjs/index.js'\n`)

const cli = join(dist, 'cjs/cli/main.js')
if (existsSync(cli)) {
  const text = readFileSync(cli, 'utf8')
  if (!text.startsWith('#!')) writeFileSync(cli, `#!/usr/bin/env node\n${text}`)
  chmodSync(cli, 0o755)
}
console.log(`built dist/cjs and dist/esm (${names.length} runtime exports)`)
