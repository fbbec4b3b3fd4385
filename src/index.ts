/** homing's public API: start it from code, validate configs, and the error catalogue. */
export { startHoming, createLogger, type Homing, type StartOptions } from './app.js';
export { parseConfig, loadConfigFile, ConfigError } from './config/load.js';
export type { Config, PoolConfig, RouteConfig, HashConfig, AffinityConfig } from './config/schema.js';
export { ERRORS, HomingError, type ErrorCode } from './errors.js';
export { createHashPickerFactory } from './routing/hash/index.js';
export { Member, MemberSet } from './members/member.js';
export { VERSION } from './version.js';
