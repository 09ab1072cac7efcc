# Cuts `terraform providers schema -json` down to the argument names and flags
# of the resource families snapsweep's module uses (see README.md).
def families: "^google_(pubsub|cloud_run_v2|firestore|cloud_scheduler|project|service_account|monitoring|artifact_registry|storage_bucket)";
def trim: {
  attributes: ((.attributes // {}) | map_values({required, optional, computed, deprecated} | with_entries(select(.value == true)))),
  block_types: ((.block_types // {}) | map_values({nesting_mode, block: (.block | trim)}))
};
def pick: with_entries(select(.key | test(families))) | map_values({block: (.block | trim)});
.provider_schemas | with_entries(.key |= (split("/") | last) | .value |= {
  resource_schemas: ((.resource_schemas // {}) | pick),
  data_source_schemas: ((.data_source_schemas // {}) | pick)
})
