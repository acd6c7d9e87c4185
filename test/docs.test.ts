import { execFile } from 'node:child_process'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

/**
 * Every ```ts block of README.md and docs/*.md is type-checked against the library's source, as a host would write
 * it: each block is a module of its own, compiled in one `tsc` run under `strict` and `nodenext`, with
 * `@wincloud/data` mapped to src/index.ts. No database is needed.
 *
 * What a block may take for granted:
 * - the library's exports, imported for it unless it imports or declares the name itself (a block often continues
 *   one that imported them);
 * - the free variables of GLOBALS below: the database handle, the actors and the host's request, the values a
 *   guide's earlier block made;
 * - `express` and `fastify`, declared by SHIMS below with just the part of their API the guides use (neither is a
 *   dependency).
 *
 * A block that cannot be checked (a fragment, a shape shown for reading) says why on the line before its fence:
 * `<!-- not type-checked: reason -->`.
 */

const ROOT = join(__dirname, '..')
const exec = promisify(execFile)

/** The free variables the guides use without making them. */
const GLOBALS = `import type * as data from '@wincloud/data'
import type { Express, Response } from 'express'

/** A host's request, as far as the guides read it: Express's, with a request id (pino-http and Fastify set one). */
interface HostRequest {
  readonly id: string
  readonly ip: string | undefined
  readonly params: Record<string, string>
  readonly query: Record<string, string | undefined>
  readonly body: { login: string; password: string; ids: string[] }
  get(header: string): string | undefined
}

declare global {
  // The handle and the actors (User rows, as db.auth.login() returns them).
  const db: data.Database
  const user: data.User
  const admin: data.User
  const alice: data.User
  const scope: data.Scope

  // What earlier blocks of getting-started.md made.
  const Users: typeof data.User
  const Droplets: typeof data.Droplet
  const web: data.Droplet
  const result: data.SeedResult

  // The host's side.
  const app: Express
  const req: HostRequest
  const res: Response
  const claims: { readonly sub: string; readonly role: string }
  const password: string
  const requestId: string
  const dropletId: string
  const a: string
  const b: string
  const log: data.Logger
  function idsFromFile(): AsyncIterable<string>
  function sendReadyEmail(to: data.User, droplet: data.Droplet): Promise<void>

  // Keys and URLs from the deployment.
  const token: string
  const keys: Record<string, string>
  const OLD_KEY: string
  const NEW_KEY: string
  const FERNET_KEY: string
  const OLD_BLIND_KEY: string
  const NEW_BLIND_KEY: string
  const pgbouncerUrl: string
  const replicaUrl: string
}
`

/** The part of Express's and Fastify's types the guides use, as those packages declare it. */
const SHIMS = `declare module 'express' {
  import type { IncomingMessage, Server, ServerResponse } from 'node:http'
  export interface Request extends IncomingMessage {
    ip: string | undefined
    params: Record<string, string>
    query: Record<string, unknown>
    body: any
    get(name: string): string | undefined
  }
  export interface Response extends ServerResponse {
    status(code: number): this
    set(field: string, value: string): this
    type(type: string): this
    json(body?: any): this
    send(body?: any): this
  }
  export type NextFunction = (err?: any) => void
  export type RequestHandler = (req: Request, res: Response, next: NextFunction) => void | Promise<void>
  export type ErrorRequestHandler = (err: any, req: Request, res: Response, next: NextFunction) => void | Promise<void>
  export interface Express {
    get(path: string, ...handlers: RequestHandler[]): this
    post(path: string, ...handlers: RequestHandler[]): this
    patch(path: string, ...handlers: RequestHandler[]): this
    use(...handlers: (RequestHandler | ErrorRequestHandler)[]): this
    listen(port: number): Server
  }
  export default function express(): Express
}

declare module 'fastify' {
  export interface FastifyError extends Error {
    code: string
    statusCode?: number
  }
  export interface FastifyBaseLogger {
    info(obj: unknown, msg?: string): void
    warn(obj: unknown, msg?: string): void
    error(obj: unknown, msg?: string): void
  }
  export interface FastifyRequest {
    id: string
    log: FastifyBaseLogger
    ip: string
    url: string
    headers: Record<string, string | string[] | undefined>
  }
  export interface FastifyReply {
    statusCode: number
    sent: boolean
    code(statusCode: number): FastifyReply
    header(key: string, value: any): FastifyReply
    type(contentType: string): FastifyReply
    send(payload?: any): FastifyReply
  }
  export type RouteHandlerMethod = (this: FastifyInstance, request: FastifyRequest, reply: FastifyReply) => unknown
  export interface FastifyInstance {
    get(path: string, handler: RouteHandlerMethod): FastifyInstance
    setErrorHandler(
      handler: (this: FastifyInstance, error: FastifyError, request: FastifyRequest, reply: FastifyReply) => unknown,
    ): FastifyInstance
    listen(options: { port: number; host?: string }): Promise<string>
  }
  export default function Fastify(options?: Record<string, unknown>): FastifyInstance
}
`

interface Block {
  /** The document, relative to the repository. */
  readonly doc: string
  /** The line of the block's first line of code, 1-based. */
  readonly line: number
  /** The indentation of the fence (blocks inside list items), removed from each line. */
  readonly indent: number
  readonly code: string
}

interface Skipped {
  readonly doc: string
  readonly line: number
  readonly reason: string
}

const OPT_OUT = /^<!--\s*not type-checked:(.*)-->$/

/** The ```ts blocks of one Markdown file, and the ones that opt out. */
function extractBlocks(doc: string, text: string): { blocks: Block[]; skipped: Skipped[]; problems: string[] } {
  const lines = text.split('\n')
  const blocks: Block[] = []
  const skipped: Skipped[] = []
  const problems: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^( *)(```+|~~~+)\s*([\w-]*)/.exec(lines[i]!)
    if (!open) continue
    const [, spaces = '', fence = '```', lang = ''] = open
    const start = i + 1
    let end = start
    while (end < lines.length && !new RegExp(`^ *${fence[0]}{${fence.length},}\\s*$`).test(lines[end]!)) end++
    if (end === lines.length) problems.push(`${doc}:${i + 1}: the code block is never closed`)
    i = end
    if (lang !== 'ts' && lang !== 'typescript') continue
    let before = start - 2
    while (before >= 0 && lines[before]!.trim() === '') before--
    const optOut = before >= 0 ? OPT_OUT.exec(lines[before]!.trim()) : null
    if (optOut) {
      const reason = optOut[1]!.trim()
      if (reason === '') problems.push(`${doc}:${start}: <!-- not type-checked: … --> needs a reason`)
      skipped.push({ doc, line: start, reason })
      continue
    }
    const indent = spaces.length
    const code = lines
      .slice(start, end)
      .map((l) => l.slice(Math.min(indent, l.length - l.trimStart().length)))
      .join('\n')
    blocks.push({ doc, line: start + 1, indent, code })
  }
  return { blocks, skipped, problems }
}

/** The names a module declares at its top level: imports, variables, functions, classes, types, enums. */
function declaredNames(fileName: string, code: string): Set<string> {
  const source = ts.createSourceFile(fileName, code, ts.ScriptTarget.Latest, false, ts.ScriptKind.TS)
  const names = new Set<string>()
  const addBinding = (name: ts.BindingName): void => {
    if (ts.isIdentifier(name)) names.add(name.text)
    else for (const element of name.elements) if (!ts.isOmittedExpression(element)) addBinding(element.name)
  }
  for (const statement of source.statements) {
    if (ts.isImportDeclaration(statement)) {
      const clause = statement.importClause
      if (clause?.name) names.add(clause.name.text)
      const bindings = clause?.namedBindings
      if (bindings && ts.isNamespaceImport(bindings)) names.add(bindings.name.text)
      if (bindings && ts.isNamedImports(bindings)) for (const element of bindings.elements) names.add(element.name.text)
    } else if (ts.isVariableStatement(statement)) {
      for (const declaration of statement.declarationList.declarations) addBinding(declaration.name)
    } else if (
      (ts.isFunctionDeclaration(statement) ||
        ts.isClassDeclaration(statement) ||
        ts.isInterfaceDeclaration(statement) ||
        ts.isTypeAliasDeclaration(statement) ||
        ts.isEnumDeclaration(statement)) &&
      statement.name
    ) {
      names.add(statement.name.text)
    }
  }
  return names
}

/** The names src/index.ts exports, values and types apart. */
async function libraryExports(): Promise<{ values: string[]; types: string[] }> {
  const file = join(ROOT, 'src', 'index.ts')
  const source = ts.createSourceFile(file, await readFile(file, 'utf8'), ts.ScriptTarget.Latest, false)
  const values: string[] = []
  const types: string[] = []
  for (const statement of source.statements) {
    if (!ts.isExportDeclaration(statement) || !statement.exportClause || !ts.isNamedExports(statement.exportClause)) {
      continue
    }
    for (const element of statement.exportClause.elements) {
      ;(statement.isTypeOnly || element.isTypeOnly ? types : values).push(element.name.text)
    }
  }
  return { values, types }
}

/** Where a compiler message points: the Markdown line and column of a line and column of a block's module. */
function docPosition(block: Block, line: number, column: number): string {
  // The module is the one-line import of the library's names, then the block.
  return `${block.doc}:${block.line + line - 2}:${column + block.indent}`
}

describe('code blocks in README.md and docs/', () => {
  it('type-check against the library', { timeout: 120_000 }, async () => {
    const docs = [
      'README.md',
      ...(await readdir(join(ROOT, 'docs')))
        .filter((name) => name.endsWith('.md'))
        .sort()
        .map((name) => `docs/${name}`),
    ]
    const blocks: Block[] = []
    const problems: string[] = []
    for (const doc of docs) {
      const found = extractBlocks(doc, await readFile(join(ROOT, doc), 'utf8'))
      blocks.push(...found.blocks)
      problems.push(...found.problems)
    }
    expect(problems).toEqual([])
    expect(blocks.length).toBeGreaterThan(50)

    const { values, types } = await libraryExports()
    await mkdir(join(ROOT, '.tmp'), { recursive: true })
    const dir = await mkdtemp(join(ROOT, '.tmp', 'docs-check-'))
    try {
      const files = new Map<string, Block>()
      for (const block of blocks) {
        const name = `${block.doc.replace(/^docs\//, '').replace(/\.md$/, '')}-L${block.line}.ts`
        const declared = declaredNames(name, block.code)
        const imports = [
          ...values.filter((n) => !declared.has(n)),
          ...types.filter((n) => !declared.has(n)).map((n) => `type ${n}`),
        ]
        const prelude = `import { ${imports.join(', ')} } from '@wincloud/data'\n`
        await writeFile(join(dir, name), `${prelude}${block.code}\nexport {}\n`)
        files.set(name, block)
      }
      await writeFile(join(dir, 'globals.d.ts'), GLOBALS)
      await writeFile(join(dir, 'shims.d.ts'), SHIMS)
      await writeFile(join(dir, 'package.json'), '{ "type": "module" }\n')
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            target: 'es2022',
            lib: ['es2023'],
            module: 'nodenext',
            moduleResolution: 'nodenext',
            types: ['node'],
            strict: true,
            skipLibCheck: true,
            noEmit: true,
            esModuleInterop: true,
            paths: await entryPaths(),
          },
          include: ['*.ts'],
        }),
      )

      let output = ''
      try {
        await exec(
          process.execPath,
          [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir, '--pretty', 'false'],
          { cwd: dir, maxBuffer: 64 * 1024 * 1024 },
        )
      } catch (error) {
        const failed = error as { stdout?: string; stderr?: string }
        output = `${failed.stdout ?? ''}${failed.stderr ?? ''}`
        if (output.trim() === '') throw error
      }

      // "<file>(<line>,<column>): error TSnnnn: <message>", then indented continuation lines.
      const errors: string[] = []
      for (const line of output.split('\n')) {
        const at = /^(.+?)\((\d+),(\d+)\): (error .*)$/.exec(line)
        if (!at) {
          if (line.trim() !== '' && errors.length > 0) errors[errors.length - 1] += `\n  ${line.trim()}`
          else if (line.trim() !== '') errors.push(line)
          continue
        }
        const [, path = '', row = '0', column = '0', message = ''] = at
        const block = files.get(path.replace(/^.*[\\/]/, ''))
        errors.push(
          block === undefined
            ? `${path}:${row}:${column}: ${message}`
            : `${docPosition(block, Number(row), Number(column))}: ${message}`,
        )
      }
      expect(errors, `code blocks that do not type-check:\n${errors.join('\n')}`).toEqual([])
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})

/** The package's entries mapped to their sources: `@wincloud/data` → src/index.ts, `@wincloud/data/crypto` → src/crypto.ts, … */
async function entryPaths(): Promise<Record<string, string[]>> {
  const { exports } = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as {
    exports: Record<string, unknown>
  }
  return Object.fromEntries(
    Object.keys(exports)
      .filter((subpath) => subpath !== './package.json')
      .map((subpath) => {
        const name = subpath === '.' ? 'index' : subpath.slice(2)
        return [subpath === '.' ? '@wincloud/data' : `@wincloud/data/${name}`, [join(ROOT, 'src', `${name}.ts`)]]
      }),
  )
}
