// xDS v3 messages as @grpc/proto-loader objects with keepCase (snake_case fields).
// Requests are typed leniently (fields optional, message fields nullable) because proto-loader
// omits or nulls unset fields depending on its `defaults` option; responses are always complete.

export interface Any {
  type_url: string;
  value: Buffer;
}

/** google.rpc.Status */
export interface Status {
  code: number;
  message: string;
  details?: unknown[];
}

/** envoy.config.core.v3.Node; only `id` matters to the protocol core. */
export interface Node {
  id?: string;
  cluster?: string;
  user_agent_name?: string;
  [field: string]: unknown;
}

export interface DiscoveryRequest {
  version_info?: string;
  node?: Node | null;
  resource_names?: string[];
  type_url?: string;
  response_nonce?: string;
  error_detail?: Status | null;
}

export interface DiscoveryResponse {
  version_info: string;
  resources: Any[];
  type_url: string;
  nonce: string;
}

export interface DeltaDiscoveryRequest {
  node?: Node | null;
  type_url?: string;
  resource_names_subscribe?: string[];
  resource_names_unsubscribe?: string[];
  initial_resource_versions?: Record<string, string>;
  response_nonce?: string;
  error_detail?: Status | null;
}

/** envoy.service.discovery.v3.Resource (the fields SDS uses). */
export interface DeltaResource {
  name: string;
  version: string;
  resource: Any;
}

export interface DeltaDiscoveryResponse {
  system_version_info: string;
  resources: DeltaResource[];
  removed_resources: string[];
  type_url: string;
  nonce: string;
}
