//! `kubectl_complete-mesh_vm`: completion helper kubectl runs for `kubectl mesh-vm <TAB>`.

#[path = "shim.rs"]
mod shim;

fn main() -> std::process::ExitCode {
    shim::run("kubectl-mesh_vm")
}
