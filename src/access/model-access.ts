import { quoteIdentifier } from '../internal/identifiers.js'
import type { Model } from 'objection'
import { blindIndexes } from '../crypto/blind-index.js'
import { encryptedProperties, keyringOf } from '../crypto/columns.js'
import { ConfigError, ValidationError } from '../errors/index.js'
import { FilterCompiler, type ColumnType, type FilterColumn } from './filter-compiler.js'
import type { CompiledSort, SortKey } from '../pagination/source.js'
import type { Policy } from '../models/policy.js'

/** What the access layer reads from a model class. */
interface AccessModelClass {
  readonly name: string
  readonly tableName: string
  readonly policy?: Policy | undefined
  readonly filterable?: Readonly<Record<string, ColumnType>> | undefined
  readonly sortable?: readonly string[] | undefined
  readonly defaultSort?: readonly string[] | undefined
  readonly jsonSchema?: { properties?: Record<string, unknown> } | null | undefined
  readonly encrypted?: Readonly<Record<string, unknown>> | undefined
  propertyNameToColumnName(property: string): string
}

/**
 * Everything about one model that scoping, filtering and sorting need, computed once per model class.
 *
 * @internal
 */
export interface ModelAccess {
  readonly name: string
  readonly table: string
  /** `"droplets"` */
  readonly tableSql: string
  readonly policy: Policy | undefined
  /** `"droplets"."user_id"`, when the policy names an owner. */
  readonly ownerSql: string | undefined
  readonly ownerColumn: string | undefined
  readonly ownerProperty: string | undefined
  readonly idSql: string
  readonly filters: FilterCompiler
  /** Sortable property → qualified column SQL. */
  readonly sortable: ReadonlyMap<string, string>
  readonly defaultSort: readonly string[]
  /** Properties whose column may hold NULL (from the JSON schema). */
  readonly nullable: ReadonlySet<string>
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/
const RESERVED = new Set(['and', 'or', 'not'])

const cache = new WeakMap<object, ModelAccess>()

/**
 * The access metadata of a model class (bound or not), from its `policy`, `filterable`, `sortable` and
 * `defaultSort` statics.
 *
 * @internal
 */
export function modelAccess(modelClass: typeof Model): ModelAccess {
  let access = cache.get(modelClass)
  if (access === undefined) {
    access = build(modelClass)
    cache.set(modelClass, access)
  }
  return access
}

function allowsNull(schema: unknown): boolean {
  if (typeof schema !== 'object' || schema === null) return false
  const { type, anyOf, oneOf } = schema as { type?: unknown; anyOf?: unknown; oneOf?: unknown }
  if (type === 'null' || (Array.isArray(type) && type.includes('null'))) return true
  return [anyOf, oneOf].some((list) => Array.isArray(list) && list.some(allowsNull))
}

function build(model: AccessModelClass): ModelAccess {
  const table = model.tableName
  const tableSql = quoteIdentifier(table)
  const column = (property: string): string =>
    `${tableSql}.${quoteIdentifier(model.propertyNameToColumnName(property))}`
  const check = (property: string, what: string): void => {
    if (!IDENTIFIER.test(property) || RESERVED.has(property)) {
      throw new ValidationError(`${model.name}.${what} names an invalid property.`, [
        { field: `${model.name}.${what}`, message: 'must list property names' },
      ])
    }
  }
  const filterColumns = new Map<string, FilterColumn>()
  for (const [property, type] of Object.entries(model.filterable ?? {})) {
    check(property, 'filterable')
    filterColumns.set(property, { sql: column(property), type })
  }
  // Encrypted properties with a blind index: equality filters become lookups of the index.
  for (const encrypted of model.encrypted === undefined ? [] : encryptedProperties(model as never)) {
    const indexColumn = encrypted.blindIndexColumn
    if (indexColumn === undefined) continue
    filterColumns.set(encrypted.property, {
      sql: `${tableSql}.${quoteIdentifier(indexColumn)}`,
      type: 'string',
      lookup: (value) => {
        const keyring = keyringOf((model as { knex?: () => unknown }).knex?.() as never)
        if (keyring === undefined)
          throw new ConfigError('encryption', `is needed to filter on ${model.name}.${encrypted.property}.`)
        const indexes = blindIndexes(keyring, table, indexColumn, value, encrypted.blindIndex)
        return indexes.length === 1 ? indexes[0]! : indexes
      },
    })
  }
  const sortable = new Map<string, string>()
  for (const property of model.sortable ?? []) {
    check(property, 'sortable')
    sortable.set(property, column(property))
  }
  const nullable = new Set<string>()
  for (const [property, schema] of Object.entries(model.jsonSchema?.properties ?? {})) {
    if (allowsNull(schema)) nullable.add(property)
  }
  const ownerProperty = model.policy?.owner?.property
  return Object.freeze({
    name: model.name,
    table,
    tableSql,
    policy: model.policy,
    ownerProperty,
    ownerColumn: ownerProperty === undefined ? undefined : model.propertyNameToColumnName(ownerProperty),
    ownerSql: ownerProperty === undefined ? undefined : column(ownerProperty),
    idSql: column('id'),
    filters: new FilterCompiler(filterColumns),
    sortable,
    defaultSort: model.defaultSort ?? (sortable.has('createdAt') ? ['-createdAt'] : []),
    nullable,
  })
}

/**
 * Checks a sort list (`['-createdAt', 'name']`) against the model's whitelist and compiles it, ending in the
 * primary key so the order is total.
 *
 * @internal
 */
export function compileSort(access: ModelAccess, sort: unknown): CompiledSort {
  const list = sort === undefined ? access.defaultSort : sort
  if (!Array.isArray(list)) {
    throw new ValidationError('Invalid sort: must be a list of property names.', [
      { field: 'sort', message: 'must be a list of property names', keyword: 'sort' },
    ])
  }
  if (list.length > 8) {
    throw new ValidationError('Invalid sort: at most 8 properties.', [
      { field: 'sort', message: 'has too many properties' },
    ])
  }
  const keys: SortKey[] = []
  const seen = new Set<string>()
  let lastDescending = false
  for (const [i, entry] of list.entries()) {
    const field = `sort[${i}]`
    if (typeof entry !== 'string') {
      throw new ValidationError(`Invalid sort: ${field} must be a string.`, [{ field, message: 'must be a string' }])
    }
    const descending = entry.startsWith('-')
    const property = descending ? entry.slice(1) : entry
    const sql = access.sortable.get(property)
    if (sql === undefined || !access.sortable.has(property)) {
      const message = `is not a sortable property (sortable: ${[...access.sortable.keys()].join(', ') || 'none'})`
      throw new ValidationError(`Invalid sort: ${field} ${message}.`, [{ field, message, keyword: 'sort' }])
    }
    if (seen.has(property)) {
      throw new ValidationError(`Invalid sort: ${field} repeats a property.`, [
        { field, message: 'repeats a property' },
      ])
    }
    seen.add(property)
    lastDescending = descending
    keys.push({ sql, descending, nullable: access.nullable.has(property) })
  }
  if (!seen.has('id')) keys.push({ sql: access.idSql, descending: lastDescending, nullable: false })
  return {
    key: list.join(','),
    sql: keys.map((k) => `${k.sql} ${k.descending ? 'desc' : 'asc'}`).join(', '),
    keys,
  }
}
