#!/usr/bin/env bash
# Manual deploy of snapsweep (docs/deploy.md): from an empty project to a
# running service, or a new version onto a running one.
#
#   PROJECT_ID=my-project [REGION=us-central1] deploy/deploy.sh [TERRAFORM APPLY ARGS...]
#
# 1. terraform apply of what the build needs (APIs, the image repository,
#    the build service account and its source bucket);
# 2. Cloud Build builds the image with the Dockerfile and pushes it
#    (deploy/cloudbuild.yaml, _DEPLOY=false);
# 3. terraform apply of everything with that image.
#
# Settings: PROJECT_ID (required), REGION, TF_DIR (the root configuration,
# default terraform/examples/basic, whose terraform.tfvars is read as usual),
# TF_MODULE (address of the snapsweep module in it, default module.snapsweep),
# SERVICE_NAME and REPOSITORY (if the module's service_name or
# artifact_registry_repository_id are not the defaults), TAG (image tag,
# default git describe). Extra arguments go to the last terraform apply,
# e.g. -auto-approve or -var 'managed_projects=["a","b"]'.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${PROJECT_ID:?set PROJECT_ID to the host project}"
REGION=${REGION:-us-central1}
TF_DIR=${TF_DIR:-terraform/examples/basic}
TF_MODULE=${TF_MODULE:-module.snapsweep}
SERVICE_NAME=${SERVICE_NAME:-snapsweep}
REPOSITORY=${REPOSITORY:-snapsweep}

for tool in gcloud terraform git; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "deploy: $tool is not on PATH" >&2
		exit 1
	fi
done

TAG=${TAG:-$(git describe --always --dirty 2>/dev/null || echo dev)}
if [[ "$TAG" == *-dirty ]]; then
	# Never reuse the tag of a commit for uncommitted code.
	TAG="$TAG-$(date -u +%Y%m%d%H%M%S)"
	echo "deploy: uncommitted changes: image tag $TAG"
fi
image="$REGION-docker.pkg.dev/$PROJECT_ID/$REPOSITORY/snapsweep:$TAG"
builder="$SERVICE_NAME-builder@$PROJECT_ID.iam.gserviceaccount.com"
bucket="$PROJECT_ID-$SERVICE_NAME-build"

tf() { terraform -chdir="$TF_DIR" "$@"; }
vars=(-var "project_id=$PROJECT_ID" -var "region=$REGION" -var "image=$image")

echo "==> terraform init ($TF_DIR)"
tf init -input=false

echo "==> terraform apply: APIs, image repository, build identity"
targets=()
for r in \
	google_project_service.apis \
	google_artifact_registry_repository.images \
	google_service_account.builder \
	google_storage_bucket.build_source \
	google_storage_bucket_iam_member.builder_reads_source \
	google_artifact_registry_repository_iam_member.builder_pushes_images \
	google_project_iam_member.builder_logs; do
	targets+=("-target=$TF_MODULE.$r")
done
tf apply -input=false "${vars[@]}" "${targets[@]}"

echo "==> Cloud Build: $image"
gcloud builds submit \
	--project="$PROJECT_ID" \
	--region="$REGION" \
	--config=deploy/cloudbuild.yaml \
	--service-account="projects/$PROJECT_ID/serviceAccounts/$builder" \
	--gcs-source-staging-dir="gs://$bucket/source" \
	--substitutions="_REGION=$REGION,_REPOSITORY=$REPOSITORY,_SERVICE=$SERVICE_NAME,_TAG=$TAG,_DEPLOY=false" \
	.

echo "==> terraform apply: everything, image $image"
tf apply -input=false "${vars[@]}" "$@"

echo "==> deployed $image"
tf output
