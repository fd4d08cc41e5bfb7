// A configuration that cannot be used, from any source (file, environment, flags, an API body):
// the message names the source and the field at fault.
export class ConfigError extends Error {}
