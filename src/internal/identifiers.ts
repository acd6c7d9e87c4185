/**
 * A PostgreSQL identifier in double quotes, with embedded quotes doubled: `droplets` → `"droplets"`. Every table and
 * column name the library writes into SQL goes through it.
 *
 * @internal
 */
export const quoteIdentifier = (name: string): string => `"${name.replace(/"/g, '""')}"`

/** The prefix of columns the library selects for its own use, e.g. keyset cursor values. @internal */
export const INTERNAL_COLUMN = '__wincloud_'
