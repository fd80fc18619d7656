// The typings of @connectrpc/connect name the fetch API's `HeadersInit`,
// which TypeScript's "dom" lib declares and @types/node 20 does not. This
// declares it for Node without pulling the browser globals of "dom" in.
type HeadersInit = Headers | Record<string, string> | [string, string][];
