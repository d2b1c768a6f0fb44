//! The real backend: one libvirt connection per agent call.

use std::path::Path;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::storage_pool::StoragePool;
use virt::sys;

use super::{libvirt_raw, owner_tag};
use super::state::{DomainState, StateKind};
use super::{HvError, HvErrorKind, HvResult, Hypervisor, ShutdownModes};

pub struct LibvirtHypervisor {
    conn: Connect,
    uri: String,
}

/// Maps a libvirt error to ours, keeping libvirt's message for the operator.
pub fn hv_error(error: VirtError) -> HvError {
    use virt::enumutil::Enum;
    let kind = match error.code() {
        Enum::Known(ErrorNumber::NoDomain) => HvErrorKind::NoDomain,
        Enum::Known(ErrorNumber::NoConnect | ErrorNumber::InvalidConn | ErrorNumber::AuthFailed) => {
            HvErrorKind::Unreachable
        }
        Enum::Known(ErrorNumber::SystemError | ErrorNumber::Rpc) if is_connection_message(error.message()) => {
            HvErrorKind::Unreachable
        }
        Enum::Known(ErrorNumber::OperationInvalid) if error.message().contains("not running") => {
            HvErrorKind::NotRunning
        }
        _ => HvErrorKind::Other,
    };
    HvError::new(kind, error.message().to_owned())
}

fn is_connection_message(message: &str) -> bool {
    ["Failed to connect socket", "Cannot recv data", "Cannot write data", "connection", "End of file"]
        .iter()
        .any(|m| message.contains(m))
}

impl LibvirtHypervisor {
    /// Connects to `uri` (libvirt's default when `None`). libvirt's own error
    /// printer is silenced first: its messages reach the log through our errors.
    pub fn connect(uri: Option<&str>) -> HvResult<LibvirtHypervisor> {
        virt::error::clear_error_callback();
        let conn = Connect::open(uri).map_err(|e| {
            let mut error = hv_error(e);
            error.kind = HvErrorKind::Unreachable;
            error
        })?;
        let uri = conn.uri().unwrap_or_else(|_| uri.unwrap_or_default().to_owned());
        Ok(LibvirtHypervisor { conn, uri })
    }

    pub fn conn(&self) -> &Connect {
        &self.conn
    }

    pub fn domain(&self, name: &str) -> HvResult<Domain> {
        self.conn.lookup_domain_by_name(name).map_err(hv_error)
    }

    fn pool(&self, name: &str) -> HvResult<StoragePool> {
        self.conn.lookup_storage_pool_by_name(name).map_err(hv_error)
    }
}

pub fn domain_state(domain: &Domain) -> HvResult<DomainState> {
    let (state, reason) = libvirt_raw::state(domain)?;
    let kind = StateKind::from_libvirt(state).ok_or_else(|| HvError::other(format!("unknown domain state {state}")))?;
    Ok(DomainState::new(kind, reason))
}

fn path_str(path: &Path) -> HvResult<&str> {
    path.to_str().ok_or_else(|| HvError::other(format!("path is not UTF-8: {}", path.display())))
}

impl Hypervisor for LibvirtHypervisor {
    fn uri(&self) -> String {
        self.uri.clone()
    }

    fn state(&self, name: &str) -> HvResult<Option<DomainState>> {
        match self.domain(name) {
            Ok(domain) => match domain_state(&domain) {
                Ok(state) => Ok(Some(state)),
                // It vanished between lookup and query: a transient domain that just stopped.
                Err(e) if e.kind == HvErrorKind::NoDomain => Ok(None),
                Err(e) => Err(e),
            },
            Err(e) if e.kind == HvErrorKind::NoDomain => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn is_persistent(&self, name: &str) -> HvResult<bool> {
        self.domain(name)?.is_persistent().map_err(hv_error)
    }

    fn create_transient(&self, xml: &str) -> HvResult<()> {
        self.conn.create_domain_xml(xml, 0).map(drop).map_err(hv_error)
    }

    fn define(&self, xml: &str) -> HvResult<()> {
        self.conn.define_domain_xml(xml).map(drop).map_err(hv_error)
    }

    fn start_defined(&self, name: &str) -> HvResult<()> {
        self.domain(name)?.create().map_err(hv_error)
    }

    fn undefine(&self, name: &str) -> HvResult<()> {
        // Keep NVRAM and managed-save images out of it: only the definition goes.
        self.domain(name)?.undefine().map_err(hv_error)
    }

    fn shutdown(&self, name: &str, modes: ShutdownModes) -> HvResult<()> {
        let domain = self.domain(name)?;
        if modes.0 == 0 {
            domain.shutdown().map(drop).map_err(hv_error)
        } else {
            domain.shutdown_flags(modes.0 as sys::virDomainShutdownFlagValues).map(drop).map_err(hv_error)
        }
    }

    fn destroy(&self, name: &str) -> HvResult<()> {
        self.domain(name)?.destroy().map_err(hv_error)
    }

    fn save(&self, name: &str, path: &Path) -> HvResult<()> {
        libvirt_raw::save(&self.domain(name)?, path_str(path)?)
    }

    fn restore(&self, path: &Path) -> HvResult<()> {
        self.conn.restore_domain(path_str(path)?).map_err(hv_error)
    }

    fn inactive_xml(&self, name: &str) -> HvResult<String> {
        self.domain(name)?
            .xml_desc(sys::VIR_DOMAIN_XML_INACTIVE | sys::VIR_DOMAIN_XML_SECURE)
            .map_err(hv_error)
    }

    fn ensure_pool_active(&self, pool: &str) -> HvResult<()> {
        let p = self.pool(pool)?;
        if p.is_active().map_err(hv_error)? {
            p.refresh(0).map_err(hv_error)
        } else {
            p.create(0).map(drop).map_err(hv_error)
        }
    }

    fn ensure_network_active(&self, network: &str) -> HvResult<()> {
        let n = self.conn.lookup_network_by_name(network).map_err(hv_error)?;
        if n.is_active().map_err(hv_error)? {
            Ok(())
        } else {
            n.create().map(drop).map_err(hv_error)
        }
    }

    fn active_domains(&self) -> HvResult<Vec<String>> {
        let domains = self.conn.list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE).map_err(hv_error)?;
        // A domain that stops between the listing and the name is no longer active.
        Ok(domains.iter().filter_map(|d| d.name().ok()).collect())
    }

    fn owner(&self, name: &str) -> HvResult<Option<String>> {
        use virt::enumutil::Enum;
        let kind = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
        match self.domain(name)?.metadata(kind, Some(owner_tag::NAMESPACE), sys::VIR_DOMAIN_AFFECT_CURRENT) {
            Ok(xml) => Ok(owner_tag::owner_of_element(&xml)),
            Err(e) if matches!(e.code(), Enum::Known(ErrorNumber::NoDomainMetadata)) => Ok(None),
            Err(e) => Err(hv_error(e)),
        }
    }

    fn set_owner(&self, name: &str, instance: &str) -> HvResult<()> {
        let kind = sys::VIR_DOMAIN_METADATA_ELEMENT as i32;
        let element = owner_tag::element(instance);
        self.domain(name)?
            .set_metadata(kind, Some(&element), Some(owner_tag::PREFIX), Some(owner_tag::NAMESPACE), sys::VIR_DOMAIN_AFFECT_LIVE)
            .map_err(hv_error)
    }
}
