/**
 * The SQL of a filter's shape (from the walk): a condition with `?` placeholders, column names only from the model's
 * whitelist.
 */
import type { ColumnType, FilterColumn } from './filter-types.js'
import { typeName } from './filter-values.js'

const ARRAY_TYPES: ReadonlyMap<string, string> = new Map([
  ['string', 'text[]'],
  ['enum', 'text[]'],
  ['uuid', 'uuid[]'],
  ['integer', 'int8[]'],
  ['timestamp', 'timestamptz[]'],
  ['inet', 'inet[]'],
])

function arrayType(type: ColumnType): string {
  const array = ARRAY_TYPES.get(typeName(type))
  if (array === undefined) throw new Error('filter shape: no array type')
  return array
}

/**
 * The SQL condition of a shape from a walk of a filter over `columns`, with `?` placeholders for its values.
 *
 * @internal
 */
export function compileShape(columns: ReadonlyMap<string, FilterColumn>, shape: string): string {
  let pos = 0
  const expect = (char: string): void => {
    if (shape[pos] !== char) throw new Error(`filter shape: expected ${char} at ${pos}`)
    pos += 1
  }
  const readUntil = (stops: string): string => {
    const start = pos
    while (pos < shape.length && !stops.includes(shape[pos]!)) pos += 1
    return shape.slice(start, pos)
  }
  const group = (): string => {
    expect('{')
    const parts: string[] = []
    while (shape[pos] !== '}') {
      if (shape.startsWith('and(', pos) || shape.startsWith('or(', pos)) {
        const joiner = shape.startsWith('and(', pos) ? ' and ' : ' or '
        pos += joiner === ' and ' ? 4 : 3
        const inner: string[] = []
        while (shape[pos] !== ')') {
          inner.push(group())
          if (shape[pos] === ',') pos += 1
        }
        expect(')')
        parts.push(inner.length === 0 ? (joiner === ' and ' ? 'true' : 'false') : `(${inner.join(joiner)})`)
      } else if (shape.startsWith('not(', pos)) {
        pos += 4
        const inner = group()
        expect(')')
        // `is not true` keeps two-valued logic: a comparison with NULL counts as false, so its negation is true.
        parts.push(`((${inner}) is not true)`)
      } else {
        const key = readUntil(':')
        expect(':')
        const ops = readUntil(';}').split(',')
        const column = columns.get(key)!
        for (const op of ops) parts.push(condition(column, op))
      }
      if (shape[pos] === ';') pos += 1
    }
    expect('}')
    return parts.length === 0 ? 'true' : parts.length === 1 ? parts[0]! : `(${parts.join(' and ')})`
  }
  return group()
}

function condition(column: FilterColumn, op: string): string {
  const c = column.sql
  // An integer value is any safe integer: bound as int8, so a smallint or integer column compares it (PostgreSQL
  // has the cross-type operators, and indexes serve them) instead of failing to read it as its own type.
  const v = typeName(column.type) === 'integer' ? '?::int8' : '?'
  switch (op) {
    case 'eq':
      return `${c} = ${v}`
    case 'ne':
      return `${c} is distinct from ${v}`
    case 'lt':
      return `${c} < ${v}`
    case 'lte':
      return `${c} <= ${v}`
    case 'gt':
      return `${c} > ${v}`
    case 'gte':
      return `${c} >= ${v}`
    case 'between':
      return `${c} between ${v} and ${v}`
    case 'in':
      return `${c} = any(?::${arrayType(column.type)})`
    case 'notIn':
      return `((${c} = any(?::${arrayType(column.type)})) is not true)`
    case 'isNull=1':
      return `${c} is null`
    case 'isNull=0':
      return `${c} is not null`
    case 'like':
      return `${c} like ? escape '\\'`
    case 'ilike':
      return `${c} ilike ? escape '\\'`
    default:
      throw new Error(`filter shape: unknown operator ${op}`)
  }
}
