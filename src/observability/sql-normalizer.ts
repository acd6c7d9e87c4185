import { QUERY_STATS_LIMITS } from './query-stats-limits.js'

const DOLLAR_QUOTED = /\$([A-Za-z_][A-Za-z0-9_]*)?\$[\s\S]*?\$\1\$/g
const ESCAPE_STRING = /\b[eE]'(?:[^'\\]|\\[\s\S]|'')*'/g
const STRING_LITERAL = /'(?:[^']|'')*'/g
const COMMENT = /--[^\n]*|\/\*[\s\S]*?\*\//g
const NUMBER_LITERAL = /(?<![\w$.])-?(?:0[xX][0-9a-fA-F]+|(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.])/g
const POSITIONAL = /\$\d+/g
const LIST = /\b(in|any)\s*\(\s*\?(?:\s*,\s*\?)+\s*\)/gi
const VALUES_ROWS = /(\(\?(?:, \?)*\))(?:\s*,\s*\1)+/g

/**
 * SQL with its values taken out: string and number literals, `$n` and `?` become `?`, IN-lists and repeated VALUES
 * rows collapse to one, whitespace to single spaces. Queries that differ only in values share a group.
 *
 * @example
 * ```ts
 * normalizeSql("select * from t where id in ($1, $2, $3) and name = 'x'") // 'select * from t where id in (?...) and name = ?'
 * ```
 */
export function normalizeSql(sql: string): string {
  return sql
    .replace(DOLLAR_QUOTED, '?')
    .replace(ESCAPE_STRING, '?')
    .replace(STRING_LITERAL, '?')
    .replace(COMMENT, ' ')
    .replace(POSITIONAL, '?')
    .replace(NUMBER_LITERAL, '?')
    .replace(/\s+/g, ' ')
    .trim()
    .replace(VALUES_ROWS, '$1...')
    .replace(LIST, '$1 (?...)')
}

/**
 * The operation of a statement: its first keyword in lower case (`select`, `insert`, …), the write a `with` wraps,
 * or `other`.
 *
 * @internal
 */
export function operationOf(sql: string): string {
  const match = /^\s*\(?\s*([a-z]+)/i.exec(sql)
  const word = match?.[1]?.toLowerCase() ?? 'other'
  // The operation labels a histogram: a word no statement starts with stays short.
  if (word.length > QUERY_STATS_LIMITS.operationLength) return 'other'
  return word === 'with' ? (/\b(insert|update|delete)\b/i.exec(sql)?.[1]?.toLowerCase() ?? 'select') : word
}
