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

const IMPORT = /^import\s+(type\s+)?([^'"]*?)\s*from\s+'(\.[^']+)'/gm

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
 * The one cycle left, to be taken apart (docs/architecture.md, "Where it stands"): it may shrink, never grow, and
 * no other may appear.
 */
const KNOWN_CYCLE = ['access', 'audit', 'bulk']

/** What each lower folder may import, besides itself. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  errors: [],
  internal: [],
  crypto: ['errors', 'internal'],
  migrations: ['errors', 'internal'],
  pagination: ['errors', 'internal'],
  models: ['errors', 'internal', 'crypto'],
}

describe('the layers', () => {
  const graph = folderGraph()

  it('the ground and the leaves import only what is below them', () => {
    const broken: string[] = []
    for (const [folder, allowed] of Object.entries(ALLOWED)) {
      for (const [to, example] of graph.get(folder) ?? []) {
        if (!allowed.includes(to)) broken.push(`${folder} may not import ${to}: ${example}`)
      }
    }
    expect(broken).toEqual([])
  })

  it('has no folder-level import cycle but the known one, which only shrinks', () => {
    for (const component of cycles(graph)) {
      const outside = component.filter((f) => !KNOWN_CYCLE.includes(f))
      expect(outside, `a cycle through ${component.join(', ')}`).toEqual([])
    }
  })

  it('finds cycles: the check itself can fail', () => {
    const looped = new Map([
      ['a', new Map([['b', 'a.ts → b.ts']])],
      ['b', new Map([['a', 'b.ts → a.ts']])],
    ])
    expect(cycles(looped)).toEqual([['a', 'b']])
  })
})
