import { INTERNAL_COLUMN } from '../internal/identifiers.js'
import type { SortKey } from './source.js'

/** The columns through which a keyset page reads its rows' sort-key values as PostgreSQL text. @internal */
export const keyColumn = (i: number): string => `${INTERNAL_COLUMN}k${i}`

/**
 * The select-list additions that read each sort key as text, so timestamps keep their microseconds in cursors.
 *
 * @internal
 */
export function keySelect(keys: readonly SortKey[]): string {
  return keys.map((key, i) => `(${key.sql})::text as "${keyColumn(i)}"`).join(', ')
}

/**
 * The order of a page: the sort itself, or its exact reverse for a page before a cursor (PostgreSQL's NULL
 * placement flips with the direction, so the reverse is exact).
 *
 * @internal
 */
export function keysetOrder(keys: readonly SortKey[], backward: boolean): string {
  return keys.map((key) => `${key.sql} ${key.descending !== backward ? 'desc' : 'asc'}`).join(', ')
}

/**
 * The condition "comes after the cursor" in the page's direction, for cursor values in text form (`null` for
 * NULL). Rows compare as PostgreSQL orders them: ascending puts NULLs last, descending first. When no key can be
 * NULL and all go one way, it is one row comparison, which the index serves as a range scan.
 *
 * @internal
 */
export function keysetCondition(
  keys: readonly SortKey[],
  values: readonly (string | null)[],
  backward: boolean,
): { sql: string; bindings: string[] } {
  const descending = keys.map((key) => key.descending !== backward)
  const simple =
    keys.every((key, i) => !key.nullable && values[i] !== null) && descending.every((d) => d === descending[0])
  if (simple) {
    return {
      sql: `(${keys.map((k) => k.sql).join(', ')}) ${descending[0] ? '<' : '>'} (${keys.map(() => '?').join(', ')})`,
      bindings: values as string[],
    }
  }
  const bindings: string[] = []
  const equal = (key: SortKey, value: string | null): string => {
    if (value === null) return `${key.sql} is null`
    bindings.push(value)
    return `${key.sql} = ?`
  }
  const after = (key: SortKey, value: string | null, desc: boolean): string => {
    if (value === null) return desc ? `${key.sql} is not null` : 'false'
    bindings.push(value)
    if (desc) return `${key.sql} < ?`
    return key.nullable ? `(${key.sql} > ? or ${key.sql} is null)` : `${key.sql} > ?`
  }
  const branches: string[] = []
  for (let i = 0; i < keys.length; i++) {
    const parts: string[] = []
    for (let j = 0; j < i; j++) parts.push(equal(keys[j]!, values[j] ?? null))
    parts.push(after(keys[i]!, values[i] ?? null, descending[i]!))
    branches.push(parts.length === 1 ? parts[0]! : `(${parts.join(' and ')})`)
  }
  return { sql: `(${branches.join(' or ')})`, bindings }
}
