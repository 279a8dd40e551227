/** A JSON-RPC id as MCP allows it: a string or an integer (never null for requests). */
export type JsonRpcId = string | number;
