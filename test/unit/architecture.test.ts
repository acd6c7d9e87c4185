/**
 * The layers of docs/architecture.md, held against the code: which folder of src/ imports which (value imports
 * only; `import type` is erased and binds nothing at run time).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative, sep } from 'node:path'
import { describe, expect, it } from 'vitest'

const SRC = join(__dirname, '..', '..', 'src')

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? sourceFiles(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : [],
  )
}

/** `src/access/scope.ts` → `access`; files directly in src/ are the face. */
function folderOf(file: string): string {
  const parts = relative(SRC, file).split(sep)
  return parts.length > 1 ? parts[0]! : 'face'
}

/** `import … from './x.js'` and `export … from './x.js'` (a re-export binds the module at run time too). */
const IMPORT = /^(?:import|export)\s+(type\s+)?([^'"]*?)\s*from\s+'(\.[^']+)'/gm

/** folder → the folders it imports values from, with one example import each. */
function folderGraph(): Map<string, Map<string, string>> {
  const graph = new Map<string, Map<string, string>>()
  for (const file of sourceFiles(SRC)) {
    const from = folderOf(file)
    const edges = graph.get(from) ?? new Map<string, string>()
    graph.set(from, edges)
    for (const match of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const [, typeOnly, names = '', path = ''] = match
      if (typeOnly !== undefined) continue
      const inner = names.startsWith('{')
        ? names
            .replace(/[{}]/g, '')
            .split(',')
            .map((n) => n.trim())
        : []
      if (inner.length > 0 && inner.filter((n) => n !== '').every((n) => n.startsWith('type '))) continue
      const target = normalize(join(dirname(file), path.replace(/\.js$/, '.ts')))
      const to = folderOf(target)
      if (to !== from && !edges.has(to)) edges.set(to, `${relative(SRC, file)} → ${relative(SRC, target)}`)
    }
  }
  return graph
}

/** The strongly connected components of more than one folder: the folder-level import cycles. */
function cycles(graph: Map<string, Map<string, string>>): string[][] {
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: string[] = []
  const onStack = new Set<string>()
  const found: string[][] = []
  let next = 0
  const visit = (v: string): void => {
    index.set(v, next)
    low.set(v, next++)
    stack.push(v)
    onStack.add(v)
    for (const w of graph.get(v)?.keys() ?? []) {
      if (!index.has(w)) {
        visit(w)
        low.set(v, Math.min(low.get(v)!, low.get(w)!))
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!))
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = []
      let w: string
      do {
        w = stack.pop()!
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1) found.push(component.sort())
    }
  }
  for (const v of graph.keys()) if (!index.has(v)) visit(v)
  return found
}

/**
 * What each folder may import besides itself (value imports), from the layers of docs/architecture.md: a folder
 * imports only what is below it, and within the scoping layer only what scripts/layers.json names, so that the
 * layer has no cycle and access/ composes the others. ESLint holds each file to the same list as it is written.
 */
const LAYERS = JSON.parse(readFileSync(join(__dirname, '..', '..', 'scripts', 'layers.json'), 'utf8')) as {
  readonly face: readonly string[]
  readonly allowed: Readonly<Record<string, readonly string[]>>
}
const ALLOWED = LAYERS.allowed
/** The face (index.ts, the subpath entries) and the CLI, a host of the face: they may import everything. */
const FACE = LAYERS.face

describe('the layers', () => {
  const graph = folderGraph()

  it('every folder imports only what is below it', () => {
    const broken: string[] = []
    for (const [folder, edges] of graph) {
      if (FACE.includes(folder)) continue
      const allowed = ALLOWED[folder]
      if (allowed === undefined) {
        broken.push(`${folder} has no place in the layers (add it to docs/architecture.md and to ALLOWED)`)
        continue
      }
      for (const [to, example] of edges) {
        if (!allowed.includes(to)) broken.push(`${folder} may not import ${to}: ${example}`)
      }
    }
    expect(broken).toEqual([])
  })

  it('has no folder-level import cycle', () => {
    expect(cycles(graph)).toEqual([])
  })

  it('finds cycles: the check itself can fail', () => {
    const looped = new Map([
      ['a', new Map([['b', 'a.ts → b.ts']])],
      ['b', new Map([['a', 'b.ts → a.ts']])],
    ])
    expect(cycles(looped)).toEqual([['a', 'b']])
  })
})
