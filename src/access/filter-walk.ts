/**
 * The walk of a filter: checks every group, property, operator and value against the model's columns and the
 * limits, before any SQL exists, and extracts the filter's shape (a key for its SQL) and its values in order.
 */
import { FILTER_LIMITS, Path, countCondition, countNode, invalid, type Counter, type Field } from './filter-limits.js'
import type { ColumnType, FilterColumn, FilterWalk } from './filter-types.js'
import { OPERATORS, checkValue, hasOwn, isPlainObject, likeValue, typeName } from './filter-values.js'

/** One walk under way: the model's filterable properties, the values found so far, and the count of the limits. */
interface Walk {
  readonly columns: ReadonlyMap<string, FilterColumn>
  readonly bindings: unknown[]
  readonly counter: Counter
}

/**
 * Checks a filter against the model's filterable properties; throws a ValidationError for anything not allowed.
 *
 * @internal
 */
export function walkFilter(columns: ReadonlyMap<string, FilterColumn>, filter: unknown): FilterWalk {
  const bindings: unknown[] = []
  const counter: Counter = { conditions: 0, nodes: 0, values: 0 }
  if (filter === undefined) return { shape: '', bindings }
  const shape = walkGroup({ columns, bindings, counter }, filter, 'filter', 0)
  return { shape, bindings }
}

function walkGroup(walk: Walk, filter: unknown, path: Field, depth: number): string {
  if (depth > FILTER_LIMITS.depth) invalid(path, `nests deeper than ${FILTER_LIMITS.depth} levels`)
  countNode(walk.counter, path)
  if (!isPlainObject(filter)) invalid(path, 'must be an object')
  const parts: string[] = []
  for (const key of Object.keys(filter)) {
    const value = filter[key]
    if (value === undefined) continue
    const at = new Path(path, key)
    if (key === 'and' || key === 'or') {
      if (!Array.isArray(value)) invalid(at, 'must be an array of filters')
      const items = value as readonly unknown[]
      if (items.length > FILTER_LIMITS.conditions) invalid(at, `has more than ${FILTER_LIMITS.conditions} filters`)
      // An index loop, not map(): map skips the holes of a sparse array, which must be refused like undefined.
      const inner: string[] = []
      for (let i = 0; i < items.length; i += 1) {
        inner.push(walkGroup(walk, items[i], new Path(at, i), depth + 1))
      }
      parts.push(`${key}(${inner.join(',')})`)
    } else if (key === 'not') {
      parts.push(`not(${walkGroup(walk, value, at, depth + 1)})`)
    } else {
      parts.push(walkField(walk, key, value, at))
    }
  }
  return `{${parts.join(';')}}`
}

function walkField(walk: Walk, key: string, value: unknown, path: Path): string {
  const column = walk.columns.get(key)
  if (column === undefined) {
    invalid(path, `is not a filterable property (filterable: ${[...walk.columns.keys()].join(', ') || 'none'})`)
  }
  countNode(walk.counter, path)
  if (value === null) {
    countCondition(walk.counter, path, 0)
    return `${key}:isNull=1`
  }
  if (column.lookup !== undefined) return walkEncrypted(walk, key, column.lookup, value, path)
  if (!isPlainObject(value)) {
    if (Array.isArray(value)) invalid(path, 'is a list; use { in: [...] }')
    countCondition(walk.counter, path, 1)
    walk.bindings.push(checkValue(column.type, value, path))
    return `${key}:eq`
  }
  const allowed = OPERATORS.get(typeName(column.type))
  if (allowed === undefined) return invalid(path, 'has an unknown type')
  const ops: string[] = []
  const operators = Object.keys(value)
  if (operators.length === 0) invalid(path, 'has no operator')
  for (const op of operators) {
    const at = new Path(path, op)
    if (!allowed.has(op)) invalid(at, `is not an operator for ${typeName(column.type)} properties`)
    countNode(walk.counter, at)
    // An own property: `op` is one of the known operator names, and the value is a plain object.
    ops.push(walkOperator(walk, column.type, op, value[op], at))
  }
  return `${key}:${ops.join(',')}`
}

/**
 * An encrypted property: equality through its blind index, nothing else (a range or a pattern over ciphertexts would
 * silently match nothing).
 */
function walkEncrypted(
  walk: Walk,
  key: string,
  lookup: NonNullable<FilterColumn['lookup']>,
  value: unknown,
  path: Path,
): string {
  let operand: unknown = value
  if (isPlainObject(value)) {
    const operators = Object.keys(value)
    const unknownOp = operators.find((op) => !OPERATORS.get('string')!.has(op))
    if (unknownOp !== undefined) invalid(new Path(path, unknownOp), 'is not an operator')
    if (operators.length === 1 && hasOwn(value, 'eq')) {
      countNode(walk.counter, new Path(path, 'eq'))
      operand = value.eq
    }
  }
  if (isPlainObject(operand) || Array.isArray(operand)) {
    invalid(path, 'is encrypted: only equality ({ eq } or a plain value) can be filtered, through its blind index')
  }
  countCondition(walk.counter, path, 1)
  // Several indexes while a blind-index key is being retired: a row matches under the new key or an old one.
  const indexes = lookup(checkValue('string', operand, path) as string)
  if (typeof indexes === 'string') {
    walk.bindings.push(indexes)
    return `${key}:eq`
  }
  walk.bindings.push([...indexes])
  return `${key}:in`
}

/** One operator of a property, already allowed for its type: checks its operand and returns its part of the shape. */
function walkOperator(walk: Walk, type: ColumnType, op: string, operand: unknown, at: Path): string {
  const { bindings, counter } = walk
  switch (op) {
    case 'in':
    case 'notIn': {
      if (!Array.isArray(operand)) invalid(at, 'must be an array')
      if (operand.length > FILTER_LIMITS.listLength) invalid(at, `has more than ${FILTER_LIMITS.listLength} values`)
      countCondition(counter, at, operand.length)
      // Array.from visits holes too, so `[, 'x']` is refused like `[undefined, 'x']`.
      bindings.push(Array.from(operand as unknown[], (item, i) => checkValue(type, item, new Path(at, i))))
      return op
    }
    case 'between': {
      if (!Array.isArray(operand) || operand.length !== 2) invalid(at, 'must be [low, high]')
      countCondition(counter, at, 2)
      bindings.push(checkValue(type, operand[0], new Path(at, 0)), checkValue(type, operand[1], new Path(at, 1)))
      return op
    }
    case 'isNull':
      countCondition(counter, at, 0)
      if (typeof operand !== 'boolean') invalid(at, 'must be true or false')
      return `isNull=${operand ? 1 : 0}`
    case 'like':
    case 'ilike': {
      countCondition(counter, at, 1)
      bindings.push(likeValue(operand, at).value)
      return op
    }
    default:
      countCondition(counter, at, 1)
      if (operand === null) invalid(at, 'must not be null; use { isNull: true }')
      if (Array.isArray(operand)) invalid(at, 'is a list; use { in: [...] }')
      bindings.push(checkValue(type, operand, at))
      return op
  }
}
