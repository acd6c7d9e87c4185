import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'
import * as api from '../src/index.js'
import * as crypto from '../src/crypto.js'
import * as passwords from '../src/passwords.js'
import * as sql from '../src/sql.js'

// The names host code relies on (DESIGN.md). Adding a name is a decision; removing or renaming one breaks hosts.
const RUNTIME_EXPORTS = [
  'AuditLog',
  'AuthenticationError',
  'BaseModel',
  'BaseQueryBuilder',
  'ConfigError',
  'ConflictError',
  'DEFAULT_ROLES',
  'DROPLET_STATUSES',
  'DataError',
  'DecryptionError',
  'Droplet',
  'FILTER_LIMITS',
  'ForbiddenError',
  'InvalidCursorError',
  'MIGRATIONS_TABLE',
  'NotFoundError',
  'SCOPED_DATABASE_ROLE',
  'UnavailableError',
  'User',
  'ValidationError',
  'createDatabase',
  'definePolicy',
  'healthHandler',
  'isDataError',
  'migrationSource',
  'ownedBy',
]

/** The subpath entries (`@wincloud/data/<name>`) and their runtime names. */
const SUBPATH_EXPORTS = {
  crypto: [
    'Keyring',
    'blindIndex',
    'decryptValue',
    'encryptValue',
    'envelopeKeyId',
    'fernetDecrypt',
    'fernetEncrypt',
    'fernetKey',
    'isFernetToken',
  ],
  passwords: ['hashPassword', 'passwordNeedsRehash', 'verifyPassword'],
  sql: ['normalizeSql'],
} as const

const SUBPATHS: Readonly<Record<keyof typeof SUBPATH_EXPORTS, Record<string, unknown>>> = { crypto, passwords, sql }

/** The type-only names of the subpath entries that the main entry still exports, deprecated. */
const DEPRECATED_TYPES = { crypto: ['EnvelopeContext'] } as const

/**
 * The names the main entry still exports, for one minor version, as deprecated aliases of a subpath entry's:
 * name → subpath.
 */
const DEPRECATED = new Map<string, string>([
  ...Object.entries(SUBPATH_EXPORTS).flatMap(([entry, names]) => names.map((name) => [name, entry] as const)),
  ...Object.entries(DEPRECATED_TYPES).flatMap(([entry, names]) => names.map((name) => [name, entry] as const)),
])

/** The doc comment tags of each name src/index.ts exports. */
function exportTags(): Map<string, readonly ts.JSDocTag[]> {
  const file = join(__dirname, '..', 'src', 'index.ts')
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true)
  const tags = new Map<string, readonly ts.JSDocTag[]>()
  for (const statement of source.statements) {
    if (!ts.isExportDeclaration(statement) || !statement.exportClause || !ts.isNamedExports(statement.exportClause)) {
      continue
    }
    for (const element of statement.exportClause.elements) tags.set(element.name.text, ts.getJSDocTags(element))
  }
  return tags
}

describe('public API', () => {
  it('exports exactly the documented runtime names', () => {
    expect(Object.keys(api).sort()).toEqual([...RUNTIME_EXPORTS, ...Object.values(SUBPATH_EXPORTS).flat()].sort())
  })

  it('exports no mutable state', () => {
    expect(Object.isFrozen(api.migrationSource)).toBe(true)
    expect(Object.isFrozen(api.DROPLET_STATUSES)).toBe(true)
  })

  it('exports Scope as a type only: a host gets its scopes from db.scope() and db.system()', () => {
    expect('Scope' in api).toBe(false)
  })

  it('each subpath entry exports exactly its runtime names', () => {
    for (const [entry, names] of Object.entries(SUBPATH_EXPORTS)) {
      const module = SUBPATHS[entry as keyof typeof SUBPATHS]
      expect(Object.keys(module).sort(), entry).toEqual([...names].sort())
    }
  })

  it("keeps the subpaths' names in the main entry as the same values, each marked deprecated", () => {
    const exported: Record<string, unknown> = api
    for (const [entry, names] of Object.entries(SUBPATH_EXPORTS)) {
      const module = SUBPATHS[entry as keyof typeof SUBPATHS]
      for (const name of names) expect(exported[name], name).toBe(module[name])
    }
    const tags = exportTags()
    for (const [name, entry] of DEPRECATED) {
      const deprecated = tags.get(name)?.find((tag) => tag.tagName.text === 'deprecated')
      expect(ts.getTextOfJSDocComment(deprecated?.comment) ?? '(no @deprecated)', name).toContain(
        `Import from '@wincloud/data/${entry}'`,
      )
    }
    const others = [...tags].filter(
      ([name, list]) => !DEPRECATED.has(name) && list.some((t) => t.tagName.text === 'deprecated'),
    )
    expect(others.map(([name]) => name)).toEqual([])
  })
})
