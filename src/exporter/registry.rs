//! The exporter kinds `config.toml` knows: the one place a new kind is
//! registered (one line in [`exporter_kinds!`]'s invocation below).
//!
//! From that line come the `[exporters.<kind>.<name>]` tables
//! ([`ExportersConfig`]), the list of kinds for error messages
//! ([`EXPORTER_KINDS`]) and the lookup of an exporter by its id
//! (`"<kind>/<name>"`, [`ExportersConfig::get`]). Everything else reaches the
//! kind through its [`ExporterConfig`].

use std::collections::BTreeMap;

use serde::Deserialize;

use super::ExporterConfig;

/// One configured exporter, found by its id (`"otlp/jaeger"`).
#[derive(Debug, Clone, Copy)]
pub struct ExporterEntry<'a> {
    /// `"otlp"` in `[exporters.otlp.jaeger]`.
    pub kind: &'static str,
    /// `"jaeger"` in `[exporters.otlp.jaeger]`.
    pub name: &'a str,
    /// Its table.
    pub config: &'a dyn ExporterConfig,
}

impl ExporterEntry<'_> {
    /// `"<kind>/<name>"`, as pipelines name it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// Its key path, `exporters.<kind>.<name>`.
    pub fn path(&self) -> String {
        format!("exporters.{}.{}", self.kind, self.name)
    }
}

macro_rules! exporter_kinds {
    ($($kind:ident => $config:ty),+ $(,)?) => {
        /// `[exporters]`: keyed by kind, then by a name of your choosing
        /// (`[exporters.otlp.jaeger]` is referred to as `"otlp/jaeger"`).
        /// Every kind defaults to none.
        #[derive(Debug, Clone, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ExportersConfig {
            $(
                #[serde(default)]
                pub $kind: BTreeMap<String, $config>,
            )+
        }

        /// Exporter kinds, as written in `[exporters.<kind>.<name>]` and in ids, sorted.
        pub const EXPORTER_KINDS: &[&str] = &[$(stringify!($kind)),+];

        impl ExportersConfig {
            /// Every defined exporter, sorted by id.
            pub fn iter(&self) -> impl Iterator<Item = ExporterEntry<'_>> {
                let mut all = Vec::new();
                $(
                    all.extend(self.$kind.iter().map(|(name, config)| ExporterEntry {
                        kind: stringify!($kind),
                        name: name.as_str(),
                        config: config as &dyn ExporterConfig,
                    }));
                )+
                all.sort_by(|a, b| (a.kind, a.name).cmp(&(b.kind, b.name)));
                all.into_iter()
            }

            /// The exporter with id `"<kind>/<name>"`, if defined.
            pub fn get(&self, id: &str) -> Option<ExporterEntry<'_>> {
                let (kind, name) = id.split_once('/')?;
                match kind {
                    $(
                        stringify!($kind) => self.$kind.get_key_value(name).map(|(name, config)| {
                            ExporterEntry {
                                kind: stringify!($kind),
                                name: name.as_str(),
                                config: config as &dyn ExporterConfig,
                            }
                        }),
                    )+
                    _ => None,
                }
            }
        }
    };
}

exporter_kinds! {
    debug => super::debug::DebugExporterConfig,
    elasticsearch => super::elasticsearch::config::ElasticsearchExporterConfig,
    jaeger => super::jaeger::config::JaegerExporterConfig,
    otlp => super::otlp::config::OtlpExporterConfig,
    prometheusremotewrite => super::prometheus::config::PrometheusExporterConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exporters_are_found_by_id_in_id_order() {
        let config: ExportersConfig = toml::from_str(
            "[otlp.jaeger]\nendpoint = \"http://h:1\"\n[debug.console]\n[otlp.a]\nendpoint = \"http://h:2\"\n",
        )
        .unwrap();
        let ids: Vec<_> = config.iter().map(|e| e.id()).collect();
        assert_eq!(ids, ["debug/console", "otlp/a", "otlp/jaeger"]);
        let jaeger = config.get("otlp/jaeger").unwrap();
        assert_eq!((jaeger.kind, jaeger.name), ("otlp", "jaeger"));
        assert_eq!(jaeger.path(), "exporters.otlp.jaeger");
        assert!(jaeger.config.retry_on_failure().is_some());
        assert!(config
            .get("debug/console")
            .unwrap()
            .config
            .retry_on_failure()
            .is_none());
        for missing in ["debug/jaeger", "otlp", "zipkin/jaeger", "otlp/"] {
            assert!(config.get(missing).is_none(), "{missing}");
        }
        assert_eq!(
            EXPORTER_KINDS,
            [
                "debug",
                "elasticsearch",
                "jaeger",
                "otlp",
                "prometheusremotewrite"
            ]
        );
    }
}
