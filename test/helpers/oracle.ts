/**
 * An in-memory model of what a scoped repository's `list`, `count` and `findById` return, written from the
 * documented semantics (not from the compiler's code), for property tests to compare the SQL path against.
 *
 * The oracle either answers, or throws:
 *
 * - {@link OracleInvalid}: the input breaks the documented grammar or limits, so the library must refuse it with a
 *   `ValidationError` before any SQL runs;
 * - {@link OracleUnsure}: the input is valid but its meaning depends on something the oracle does not model (a
 *   timestamp without a zone, a non-canonical IP address, a string outside the known collation order…); callers
 *   then only check safety (visibility), not exact results.
 *
 * The one thing taken from PostgreSQL is the collation order of text values (`textRank`): ask the database to
 * sort the strings once, with {@link collationRanks}, and the oracle compares ranks.
 */
import { isIP } from 'node:net'
import type { Knex } from 'knex'
import type { ColumnType } from '../../src/access/filter-compiler.js'

export class OracleInvalid extends Error {
  override readonly name = 'OracleInvalid'
}

export class OracleUnsure extends Error {
  override readonly name = 'OracleUnsure'
}

/** A row as the oracle sees it: properties by their model names; timestamps as Dates; NULL as null. */
export type OracleRow = Readonly<Record<string, unknown>> & { readonly id: string }

/** What the oracle knows about one model. */
export interface OracleModel {
  readonly filterable: Readonly<Record<string, ColumnType>>
  readonly sortable: readonly string[]
  /** The sort of a list that names none. */
  readonly defaultSort: readonly string[]
  /** The property holding the owner's id. */
  readonly ownerProperty: string
  /** PostgreSQL's collation order of every text value the oracle may have to compare with `<` or sort. */
  readonly textRank: ReadonlyMap<string, number>
}

/** Who reads: a user of some role, or `db.system()`. */
export type OracleActor =
  { readonly kind: 'system' } | { readonly kind: 'user'; readonly id: string; readonly role: string }

/** The documented limits (FILTER_LIMITS, list limits, sort length). */
export const LIMITS = Object.freeze({
  depth: 6,
  conditions: 64,
  listLength: 1_000,
  stringLength: 4_096,
  defaultLimit: 20,
  maxLimit: 100,
  sortLength: 8,
})

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const ISO = /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.\d{1,6})?)?(Z|[+-]\d{2}(?::?\d{2})?)?)?$/
const OPERATORS: Readonly<Record<string, readonly string[]>> = {
  string: ['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull', 'like', 'ilike'],
  uuid: ['eq', 'ne', 'in', 'notIn', 'isNull'],
  enum: ['eq', 'ne', 'in', 'notIn', 'isNull'],
  integer: ['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull'],
  timestamp: ['eq', 'ne', 'in', 'notIn', 'lt', 'lte', 'gt', 'gte', 'between', 'isNull'],
  boolean: ['eq', 'ne', 'isNull'],
  inet: ['eq', 'ne', 'in', 'notIn', 'isNull'],
}

const typeName = (type: ColumnType): string => (typeof type === 'string' ? type : 'enum')

const own = (value: object, key: string): boolean => Object.prototype.hasOwnProperty.call(value, key)

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Date) return false
  const proto = Object.getPrototypeOf(value) as unknown
  return proto === Object.prototype || proto === null
}

/** The collation order of `values` in the database's default collation: value → rank. */
export async function collationRanks(knex: Knex, values: Iterable<string>): Promise<Map<string, number>> {
  const distinct = [...new Set(values)]
  const { rows } = await knex.raw<{ rows: { v: string }[] }>('select v from unnest(?::text[]) as t(v) order by v', [
    distinct,
  ])
  return new Map(rows.map((row, i) => [row.v, i]))
}

/** A canonical IPv4 address (no leading zeros), the form PostgreSQL prints and compares like a string. */
const CANONICAL_IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/

/** A normalized filter value: what is compared. */
type Scalar = string | number | boolean

interface Column {
  readonly name: string
  readonly type: ColumnType
}

/** Checks a value the way the documentation says and returns what the oracle compares. */
function value(column: Column, raw: unknown, knownIps: ReadonlySet<string>): Scalar {
  const type = column.type
  switch (typeName(type)) {
    case 'string':
      if (typeof raw !== 'string' || raw.length > LIMITS.stringLength || raw.includes('\u0000')) {
        throw new OracleInvalid(`${column.name}: not a string`)
      }
      return raw
    case 'uuid':
      if (typeof raw !== 'string' || !UUID.test(raw)) throw new OracleInvalid(`${column.name}: not a UUID`)
      return raw.toLowerCase()
    case 'enum':
      if (typeof raw !== 'string' || !(type as { enum: readonly string[] }).enum.includes(raw)) {
        throw new OracleInvalid(`${column.name}: not in the enum`)
      }
      return raw
    case 'integer':
      if (typeof raw !== 'number' || !Number.isSafeInteger(raw)) throw new OracleInvalid(`${column.name}: not an int`)
      return raw
    case 'boolean':
      if (typeof raw !== 'boolean') throw new OracleInvalid(`${column.name}: not a boolean`)
      return raw
    case 'timestamp':
      return instant(column, raw)
    case 'inet':
      if (typeof raw !== 'string' || raw.length > 64 || isIP(raw) === 0) {
        throw new OracleInvalid(`${column.name}: not an IP address`)
      }
      if (!knownIps.has(raw) && !CANONICAL_IPV4.test(raw)) throw new OracleUnsure(`${column.name}: IP form`)
      return raw
    default:
      throw new OracleInvalid(`${column.name}: unknown type`)
  }
}

/** A timestamp filter value as epoch milliseconds. */
function instant(column: Column, raw: unknown): number {
  if (raw instanceof Date) {
    const ms = raw.getTime()
    if (Number.isNaN(ms)) throw new OracleInvalid(`${column.name}: invalid Date`)
    const year = raw.getUTCFullYear()
    if (year < 1 || year > 9999) throw new OracleUnsure(`${column.name}: year ${year}`)
    return ms
  }
  if (typeof raw !== 'string') throw new OracleInvalid(`${column.name}: not a timestamp`)
  const match = ISO.exec(raw)
  const ms = Date.parse(raw.replace(' ', 'T'))
  if (match === null || Number.isNaN(ms)) throw new OracleInvalid(`${column.name}: not an ISO timestamp`)
  const [, y, mo, d, h, mi, s, zone] = match
  // Without a zone PostgreSQL uses the session's time zone, JavaScript the process's (or UTC for a date).
  if (zone === undefined) throw new OracleUnsure(`${column.name}: no time zone`)
  const year = Number(y)
  const month = Number(mo)
  const day = Number(d)
  const check = new Date(Date.UTC(2000, month - 1, day))
  check.setUTCFullYear(year)
  if (year < 1 || check.getUTCMonth() !== month - 1 || check.getUTCDate() !== day) {
    throw new OracleUnsure(`${column.name}: calendar date JavaScript rolls over`)
  }
  if (Number(h) > 23 || Number(mi) > 59 || Number(s ?? 0) > 59) throw new OracleUnsure(`${column.name}: time`)
  return ms
}

/** Compares two non-null values of one column: negative, zero or positive. */
function compare(model: OracleModel, type: ColumnType, a: unknown, b: unknown): number {
  const kind = typeName(type)
  if (kind === 'timestamp') return toMs(a) - toMs(b)
  if (kind === 'integer') return (a as number) - (b as number)
  if (kind === 'uuid' || kind === 'inet' || kind === 'boolean') {
    const x = String(a)
    const y = String(b)
    return x === y ? 0 : x < y ? -1 : 1
  }
  // text (string, enum): equality is byte equality; order is the collation's.
  if (a === b) return 0
  const ra = model.textRank.get(a as string)
  const rb = model.textRank.get(b as string)
  if (ra === undefined || rb === undefined) throw new OracleUnsure('text outside the known collation order')
  return ra - rb
}

function toMs(value: unknown): number {
  if (value instanceof Date) return value.getTime()
  if (typeof value === 'number') return value
  throw new Error(`oracle: not a timestamp: ${String(value)}`)
}

const foldAscii = (text: string): string => text.replace(/[A-Z]/g, (c) => c.toLowerCase())
// eslint-disable-next-line no-control-regex
const NON_ASCII_CASED = /[^\u0000-\u007f]/

function casedOutsideAscii(text: string): boolean {
  if (!NON_ASCII_CASED.test(text)) return false
  for (const char of text) {
    if (char.charCodeAt(0) > 0x7f && char.toLowerCase() !== char.toUpperCase()) return true
  }
  return false
}

type Predicate = (row: OracleRow) => boolean

interface Counter {
  conditions: number
}

/**
 * Checks a filter against the documented grammar and limits and returns its predicate over rows. Throws
 * {@link OracleInvalid} for anything the library must refuse, {@link OracleUnsure} for what the oracle does not
 * model.
 */
export function compileFilter(
  model: OracleModel,
  filter: unknown,
  knownIps: ReadonlySet<string> = new Set(),
): Predicate {
  if (filter === undefined) return () => true
  return group(model, filter, 0, { conditions: 0 }, knownIps)
}

function group(
  model: OracleModel,
  filter: unknown,
  depth: number,
  counter: Counter,
  ips: ReadonlySet<string>,
): Predicate {
  if (depth > LIMITS.depth) throw new OracleInvalid('too deep')
  if (!isPlainObject(filter)) throw new OracleInvalid('a filter must be a plain object')
  const parts: Predicate[] = []
  for (const key of Object.keys(filter)) {
    const item = filter[key]
    if (item === undefined) continue
    if (key === 'and' || key === 'or') {
      if (!Array.isArray(item)) throw new OracleInvalid(`${key} must be an array`)
      if (item.length > LIMITS.conditions) throw new OracleInvalid(`${key} too long`)
      const inner = (item as unknown[]).map((f) => group(model, f, depth + 1, counter, ips))
      parts.push(key === 'and' ? (row) => inner.every((p) => p(row)) : (row) => inner.some((p) => p(row)))
    } else if (key === 'not') {
      const inner = group(model, item, depth + 1, counter, ips)
      // Two-valued: a comparison with NULL was already false inside, so the negation is true.
      parts.push((row) => !inner(row))
    } else {
      parts.push(field(model, key, item, counter, ips))
    }
  }
  return (row) => parts.every((p) => p(row))
}

function field(model: OracleModel, key: string, spec: unknown, counter: Counter, ips: ReadonlySet<string>): Predicate {
  if (!own(model.filterable, key)) throw new OracleInvalid(`${key} is not filterable`)
  const column: Column = { name: key, type: model.filterable[key]! }
  const count = (): void => {
    counter.conditions += 1
    if (counter.conditions > LIMITS.conditions) throw new OracleInvalid('too many conditions')
  }
  const get = (row: OracleRow): unknown => row[key] ?? null
  if (spec === null) {
    count()
    return (row) => get(row) === null
  }
  if (!isPlainObject(spec)) {
    if (Array.isArray(spec)) throw new OracleInvalid('a list where a value belongs')
    count()
    return equals(model, column, value(column, spec, ips))
  }
  const operators = Object.keys(spec)
  if (operators.length === 0) throw new OracleInvalid('no operator')
  const allowed = OPERATORS[typeName(column.type)]!
  const parts: Predicate[] = []
  for (const op of operators) {
    const operand = spec[op]
    if (!allowed.includes(op)) throw new OracleInvalid(`${op} is not an operator for ${key}`)
    count()
    parts.push(operator(model, column, op, operand, ips))
  }
  return (row) => parts.every((p) => p(row))
}

function equals(model: OracleModel, column: Column, v: Scalar): Predicate {
  return (row) => {
    const x = row[column.name] ?? null
    return x !== null && compare(model, column.type, x, v) === 0
  }
}

function operator(
  model: OracleModel,
  column: Column,
  op: string,
  operand: unknown,
  ips: ReadonlySet<string>,
): Predicate {
  const get = (row: OracleRow): unknown => row[column.name] ?? null
  const cmp = (a: unknown, b: unknown): number => compare(model, column.type, a, b)
  const range = (test: (c: number) => boolean) => {
    if (operand === null) throw new OracleInvalid(`${op}: null`)
    if (Array.isArray(operand)) throw new OracleInvalid(`${op}: a list`)
    const v = value(column, operand, ips)
    return (row: OracleRow): boolean => {
      const x = get(row)
      return x !== null && test(cmp(x, v))
    }
  }
  switch (op) {
    case 'eq':
    case 'ne': {
      if (operand === null) throw new OracleInvalid(`${op}: null`)
      if (Array.isArray(operand)) throw new OracleInvalid(`${op}: a list`)
      const eq = equals(model, column, value(column, operand, ips))
      return op === 'eq' ? eq : (row) => !eq(row)
    }
    case 'in':
    case 'notIn': {
      if (!Array.isArray(operand)) throw new OracleInvalid(`${op}: not a list`)
      if (operand.length > LIMITS.listLength) throw new OracleInvalid(`${op}: list too long`)
      // Array.from visits holes (as undefined), which are not values.
      const tests = Array.from(operand as unknown[], (item) => equals(model, column, value(column, item, ips)))
      const isIn: Predicate = (row) => tests.some((t) => t(row))
      return op === 'in' ? isIn : (row) => !isIn(row)
    }
    case 'lt':
      return range((c) => c < 0)
    case 'lte':
      return range((c) => c <= 0)
    case 'gt':
      return range((c) => c > 0)
    case 'gte':
      return range((c) => c >= 0)
    case 'between': {
      if (!Array.isArray(operand) || operand.length !== 2) throw new OracleInvalid('between: not a pair')
      const low = value(column, operand[0], ips)
      const high = value(column, operand[1], ips)
      return (row) => {
        const x = get(row)
        return x !== null && cmp(low, x) <= 0 && cmp(x, high) <= 0
      }
    }
    case 'isNull':
      if (typeof operand !== 'boolean') throw new OracleInvalid('isNull: not a boolean')
      return (row) => (get(row) === null) === operand
    case 'like':
    case 'ilike': {
      if (!isPlainObject(operand)) throw new OracleInvalid(`${op}: not a pattern`)
      const forms = Object.keys(operand)
      const form = forms[0]
      if (forms.length !== 1 || (form !== 'startsWith' && form !== 'contains' && form !== 'endsWith')) {
        throw new OracleInvalid(`${op}: not a pattern`)
      }
      const text = value({ name: column.name, type: 'string' }, operand[form], ips) as string
      const fold = op === 'ilike' ? foldAscii : (s: string): string => s
      if (op === 'ilike' && casedOutsideAscii(text)) throw new OracleUnsure('ilike outside ASCII')
      const needle = fold(text)
      return (row) => {
        const x = get(row)
        if (x === null) return false
        if (op === 'ilike' && casedOutsideAscii(x as string)) throw new OracleUnsure('ilike outside ASCII')
        const hay = fold(x as string)
        return form === 'startsWith'
          ? hay.startsWith(needle)
          : form === 'endsWith'
            ? hay.endsWith(needle)
            : hay.includes(needle)
      }
    }
    default:
      throw new OracleInvalid(`unknown operator ${op}`)
  }
}

/** The order of a sort list (compileSort semantics): a comparator over rows, ending in the id. */
export function compileOrder(model: OracleModel, sort: unknown): (a: OracleRow, b: OracleRow) => number {
  const list = sort === undefined ? model.defaultSort : sort
  if (!Array.isArray(list)) throw new OracleInvalid('sort: not a list')
  if (list.length > LIMITS.sortLength) throw new OracleInvalid('sort: too long')
  const keys: { property: string; descending: boolean }[] = []
  const seen = new Set<string>()
  for (let i = 0; i < list.length; i += 1) {
    const entry: unknown = list[i]
    if (typeof entry !== 'string') throw new OracleInvalid('sort: not a string')
    const descending = entry.startsWith('-')
    const property = descending ? entry.slice(1) : entry
    if (!model.sortable.includes(property)) throw new OracleInvalid('sort: not sortable')
    if (seen.has(property)) throw new OracleInvalid('sort: repeated')
    seen.add(property)
    keys.push({ property, descending })
  }
  const last = keys.length === 0 ? false : keys[keys.length - 1]!.descending
  const typeOf = (property: string): ColumnType => model.filterable[property] ?? 'string'
  return (a, b) => {
    for (const { property, descending } of keys) {
      const x = a[property] ?? null
      const y = b[property] ?? null
      let c: number
      // PostgreSQL: NULLS LAST ascending, NULLS FIRST descending, i.e. NULL is the largest value.
      if (x === null || y === null) c = x === y ? 0 : x === null ? 1 : -1
      else c = compare(model, typeOf(property), x, y)
      if (c !== 0) return descending ? -c : c
    }
    // uuid order is byte order, which is the order of the lowercase hex text.
    const c = a.id === b.id ? 0 : a.id < b.id ? -1 : 1
    return last ? -c : c
  }
}

/** The rows an actor may read (default roles: admin and system all, user their own). */
export function visibleRows(model: OracleModel, rows: readonly OracleRow[], actor: OracleActor): OracleRow[] {
  if (actor.kind === 'system' || actor.role === 'admin') return [...rows]
  if (actor.role !== 'user') throw new Error(`oracle: role ${actor.role} is not modelled`)
  const id = actor.id.toLowerCase()
  return rows.filter((row) => row[model.ownerProperty] === id)
}

function checkLimit(limit: unknown): number {
  if (limit === undefined) return LIMITS.defaultLimit
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > LIMITS.maxLimit) {
    throw new OracleInvalid('limit')
  }
  return limit
}

/** What `list(options)` returns: the ids, in order. */
export function oracleList(
  model: OracleModel,
  rows: readonly OracleRow[],
  actor: OracleActor,
  options?: unknown,
  knownIps: ReadonlySet<string> = new Set(),
): string[] {
  if (options !== undefined && (typeof options !== 'object' || options === null || Array.isArray(options))) {
    throw new OracleInvalid('options: not an object')
  }
  const o = (options ?? {}) as Record<string, unknown>
  for (const key of Object.keys(o)) {
    if (key !== 'filter' && key !== 'sort' && key !== 'limit') throw new OracleInvalid(`options: ${key}`)
  }
  const predicate = compileFilter(model, o.filter, knownIps)
  const order = compileOrder(model, o.sort)
  const limit = checkLimit(o.limit)
  return visibleRows(model, rows, actor)
    .filter(predicate)
    .sort(order)
    .slice(0, limit)
    .map((row) => row.id)
}

/** What `count(filter)` returns. */
export function oracleCount(
  model: OracleModel,
  rows: readonly OracleRow[],
  actor: OracleActor,
  filter?: unknown,
  knownIps: ReadonlySet<string> = new Set(),
): number {
  const predicate = compileFilter(model, filter, knownIps)
  return visibleRows(model, rows, actor).filter(predicate).length
}

/** What `findById(id)` returns: the row's id, or undefined. */
export function oracleFindById(
  model: OracleModel,
  rows: readonly OracleRow[],
  actor: OracleActor,
  id: unknown,
): string | undefined {
  if (typeof id !== 'string' || !UUID.test(id)) return undefined
  const wanted = id.toLowerCase()
  return visibleRows(model, rows, actor).find((row) => row.id === wanted)?.id
}
