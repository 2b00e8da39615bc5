#!/usr/bin/env bash
# Publish the account-link function and its templates to one S3 bucket per region, for the provider's
# "link account" button (quick-create links) and for customers' StackSets. See docs/deploying.md.
#
# Needs at publish time: the AWS CLI v2 with credentials that may write to the buckets, and the project's
# .venv (cfn-lint) for scripts/package_template.py. Nothing here runs at build or test time.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: scripts/publish.sh --bucket-prefix NAME --regions REGION[,REGION...] [options]

For each region R, uploads to the existing bucket NAME-R (which must be in region R: Lambda reads code
only from a bucket in the function's region):
  PREFIX/VERSION/account-link-SHA256.zip   the function (make package builds dist/account-link.zip), under a
                                           content-addressed key: the templates pin exactly these bytes
  PREFIX/VERSION/template.yaml             SAM template, CodeUri -> that zip (quick-create, cloudformation deploy)
  PREFIX/VERSION/template-plain.yaml       the same without the SAM transform (service-managed StackSets)
and prints their HTTPS URLs. The templates name each listed region's bucket in a mapping and refuse to be
launched in any other region. A version that is already published is never overwritten (unless --force).

Options:
  --bucket-prefix NAME   bucket name without the -REGION suffix (lowercase letters, digits, hyphens)
  --regions LIST         comma-separated regions, e.g. us-east-1,eu-west-1
  --prefix PATH          key prefix (default: account-link)
  --version V            version directory (default: the version in Cargo.toml)
  --zip FILE             the zipped bootstrap (default: dist/account-link.zip)
  --template FILE        the SAM template (default: template.yaml)
  --out-dir DIR          where the packaged templates are written (default: dist/publish)
  --latest               also copy both templates to PREFIX/latest/
  --force                overwrite a version that is already published
  --signing-profile-version-arn ARN
                         the AWS Signer profile version that signed the zip: the templates then enforce
                         code signing by default (sign the zip with AWS Signer before publishing)
  --profile NAME         AWS CLI profile
  --dry-run              package and check locally, print the AWS commands instead of running them
  -h, --help             this text
EOF
}

die() { echo "publish.sh: $*" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bucket_prefix="" regions="" prefix="account-link" version="" zip="" template="" out_base="" latest=0 force=0 dry_run=0
signing_profile=""
aws_args=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --bucket-prefix) bucket_prefix="${2:?--bucket-prefix needs a value}"; shift 2 ;;
    --regions) regions="${2:?--regions needs a value}"; shift 2 ;;
    --prefix) prefix="${2:?--prefix needs a value}"; shift 2 ;;
    --version) version="${2:?--version needs a value}"; shift 2 ;;
    --zip) zip="${2:?--zip needs a value}"; shift 2 ;;
    --template) template="${2:?--template needs a value}"; shift 2 ;;
    --out-dir) out_base="${2:?--out-dir needs a value}"; shift 2 ;;
    --latest) latest=1; shift ;;
    --force) force=1; shift ;;
    --profile) aws_args+=(--profile "${2:?--profile needs a value}"); shift 2 ;;
    --signing-profile-version-arn) signing_profile="${2:?--signing-profile-version-arn needs a value}"; shift 2 ;;
    --dry-run) dry_run=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[[ -n "$bucket_prefix" ]] || { usage >&2; die "--bucket-prefix is required"; }
[[ -n "$regions" ]] || { usage >&2; die "--regions is required"; }
[[ "$bucket_prefix" =~ ^[a-z0-9][a-z0-9-]{1,40}$ ]] \
  || die "--bucket-prefix '$bucket_prefix': lowercase letters, digits and hyphens (no dots: HTTPS URLs must stay valid)"
[[ "$prefix" =~ ^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$ ]] || die "--prefix '$prefix': path segments of letters, digits, . _ -"
if [[ -z "$version" ]]; then
  version="$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)"
  [[ -n "$version" ]] || die "cannot read the version from Cargo.toml; pass --version"
fi
[[ "$version" =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ && "$version" != latest ]] || die "--version '$version' is not a usable directory name"
zip="${zip:-$root/dist/account-link.zip}"
template="${template:-$root/template.yaml}"
[[ -f "$template" ]] || die "template not found: $template"

python="${PYTHON:-$root/.venv/bin/python}"
[[ -x "$python" ]] || python="$(command -v python3)" || die "python3 not found (make the .venv first)"
cfn_lint="$root/.venv/bin/cfn-lint"

IFS=',' read -r -a region_list <<<"$regions"
for r in "${region_list[@]}"; do
  [[ "$r" =~ ^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$ ]] || die "--regions: '$r' is not a region name"
done

# The zip's key is its SHA-256 (content-addressed), so even a dry run needs it.
[[ -f "$zip" ]] || die "$zip not found: run 'make package' first"
sha256="$("$python" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$zip")"
if [[ $dry_run -eq 0 ]]; then
  command -v aws >/dev/null || die "the AWS CLI is required to publish (https://docs.aws.amazon.com/cli/)"
fi

# Runs a command, or prints it in a dry run.
run() {
  if [[ $dry_run -eq 1 ]]; then
    printf '+'; printf ' %q' "$@"; printf '\n'
  else
    "$@"
  fi
}

s3_host() { # region -> S3 endpoint host suffix
  case "$1" in
    cn-*) echo "s3.$1.amazonaws.com.cn" ;;
    *) echo "s3.$1.amazonaws.com" ;;
  esac
}

out_dir="${out_base:-$root/dist/publish}/$version"
zip_key="$prefix/$version/account-link-$sha256.zip"
extra_args=(--code-sha256 "$sha256" --regions "$regions")
[[ -n "$signing_profile" ]] && extra_args+=(--signing-profile-version-arn "$signing_profile")
# One pair of templates for every region: a mapping names each region's bucket <bucket-prefix>-<region>,
# so the same template also serves a StackSet that spans the published regions (and refuses others).
# Built and checked locally before any upload.
mkdir -p "$out_dir"
for variant in "" --plain; do
  name="template.yaml"
  [[ -n "$variant" ]] && name="template-plain.yaml"
  # shellcheck disable=SC2016 # ${AWS::Region} is for CloudFormation, not the shell
  "$python" "$root/scripts/package_template.py" "$template" --bucket "$bucket_prefix"'-${AWS::Region}' \
    --key "$zip_key" "${extra_args[@]}" $variant -o "$out_dir/$name"
done
if [[ -x "$cfn_lint" ]]; then
  "$cfn_lint" "$out_dir/template.yaml" "$out_dir/template-plain.yaml" \
    || die "cfn-lint rejects the packaged templates in $out_dir"
fi

# Every bucket is checked before anything is uploaded, so a bad region leaves no half-published version.
if [[ $dry_run -eq 0 ]]; then
  for region in "${region_list[@]}"; do
    bucket="$bucket_prefix-$region"
    location="$(aws ${aws_args[@]+"${aws_args[@]}"} s3api get-bucket-location --region "$region" --bucket "$bucket" \
      --query LocationConstraint --output text)" || die "cannot read bucket $bucket (does it exist? may these credentials use it?)"
    [[ "$location" == "None" || "$location" == "null" ]] && location="us-east-1"
    [[ "$location" == "$region" ]] || die "bucket $bucket is in $location, not $region"
    if [[ $force -eq 0 ]] \
      && aws ${aws_args[@]+"${aws_args[@]}"} s3api head-object --region "$region" --bucket "$bucket" --key "$zip_key" >/dev/null 2>&1; then
      die "s3://$bucket/$zip_key already exists: publish a new --version (or --force)"
    fi
  done
fi

summary=()
for region in "${region_list[@]}"; do
  bucket="$bucket_prefix-$region"
  base="$prefix/$version"
  run aws ${aws_args[@]+"${aws_args[@]}"} s3 cp --region "$region" --only-show-errors \
    "$zip" "s3://$bucket/$zip_key"
  for name in template.yaml template-plain.yaml; do
    run aws ${aws_args[@]+"${aws_args[@]}"} s3 cp --region "$region" --only-show-errors --content-type text/yaml \
      "$out_dir/$name" "s3://$bucket/$base/$name"
    if [[ $latest -eq 1 ]]; then
      run aws ${aws_args[@]+"${aws_args[@]}"} s3 cp --region "$region" --only-show-errors --content-type text/yaml \
        "$out_dir/$name" "s3://$bucket/$prefix/latest/$name"
    fi
  done
  host="$bucket.$(s3_host "$region")"
  summary+=("$region https://$host/$base/template.yaml https://$host/$base/template-plain.yaml")
done

echo
verb="Published"
[[ $dry_run -eq 1 ]] && verb="Would publish"
echo "$verb account-link $version (zip sha256 $sha256):"
printf '%s\n' "region template-url stackset-template-url" "${summary[@]}" | column -t 2>/dev/null \
  || printf '%s\n' "${summary[@]}"
echo "Quick-create link: scripts/quick_create_link.py --region REGION --template-url TEMPLATE-URL ..."
