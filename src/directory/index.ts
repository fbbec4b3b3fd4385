/** Directory sources (the I/O side of the directory look-up tier in src/routing/directory/) and the seed file. */
export { answerTooLarge, checkKey, MAX_ANSWER_BYTES, MAX_KEY_BYTES, parseAnswer, parseBareAnswer } from './answer.js';
export { cacheTtl, HttpDirectorySource, type HttpDirectoryOptions } from './http.js';
export { RedisDirectorySource, type RedisDirectoryOptions } from './redis.js';
export { parseSeed, SeedFile, type SeedFileOptions } from './seed.js';
