//! The gRPC methods this port serves, read once from the contracts it serves (Open Clanker's own,
//! health, both reflection versions): the guard refuses the others before reading a body, and
//! the metrics label them `other`.

use std::collections::HashSet;
use std::sync::LazyLock;

static SERVED: LazyLock<HashSet<String>> = LazyLock::new(|| {
    use prost::Message as _;
    let sets = [
        open_clanker_proto::v1::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut methods = HashSet::new();
    for bytes in sets {
        // Compiled in: a set that does not decode is a build error caught by the tests.
        let Ok(set) = prost_types::FileDescriptorSet::decode(bytes) else {
            continue;
        };
        for file in set.file {
            for service in &file.service {
                for method in &service.method {
                    methods.insert(format!(
                        "/{}.{}/{}",
                        file.package(),
                        service.name(),
                        method.name()
                    ));
                }
            }
        }
    }
    methods
});

/// Every gRPC method this port serves, as `/package.Service/Method`.
pub fn served_grpc_methods() -> &'static HashSet<String> {
    &SERVED
}

/// Whether `path` is a method this port serves.
pub fn is_served(path: &str) -> bool {
    SERVED.contains(path)
}

/// Whether `path` has a gRPC method's shape, `/<package>.<Service>/<Method>` (served or not).
pub fn is_grpc_path(path: &str) -> bool {
    path.trim_start_matches('/')
        .split_once('/')
        .is_some_and(|(service, _)| service.contains('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_served_methods_come_from_the_contracts() {
        for m in [
            "/openclanker.v1.ChatService/Chat",
            "/openclanker.v1.AccessService/ApprovePairing",
            "/grpc.health.v1.Health/Check",
            "/grpc.health.v1.Health/Watch",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(is_served(m), "{m}: {:?}", served_grpc_methods());
        }
        assert!(!is_served("/openclanker.v1.ChatService/NoSuchMethod"));
    }

    #[test]
    fn grpc_paths_have_a_package() {
        assert!(is_grpc_path("/openclanker.v1.ChatService/Chat"));
        assert!(is_grpc_path("/x.y/z"));
        assert!(!is_grpc_path("/v1/chat/completions"));
        assert!(!is_grpc_path("/health"));
    }
}
