//! [`PgRoutes`]: Postgres stores by use case — a default store and stores of their own for some
//! use cases — as one routed `JobStore` ([`PgRoutes::routed`], see
//! [`jobs_core::route`]) and for enqueues inside a caller's transaction.
//!
//! A caller's transaction belongs to one database, so a job can be enqueued in it only when its
//! use case is kept in that database: [`PgRoutes::enqueue_in`] takes the store the transaction
//! was opened on and refuses a job of a use case kept elsewhere (the job would otherwise be
//! written in a database whose commit is not the caller's). Across stores there is no atomic
//! enqueue: enqueue such a job outside the transaction, or in a transaction of its own store.
//!
//! ```no_run
//! # async fn demo(routes: jobs_postgres::PgRoutes, job: jobs_core::NewJob) -> Result<(), Box<dyn std::error::Error>> {
//! let store = routes.store_for(&job.use_case);
//! let mut client = store.pool().get().await?;
//! let tx = client.transaction().await?;
//! // ... your own writes on `tx` (in the database of the job's use case) ...
//! routes.enqueue_in(store, &tx, job).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use jobs_core::{EnqueueError, Enqueued, JobStore, NewJob, RoutedStore, StoreError};

use crate::PgStore;

/// Postgres stores by use case: see the [module docs](self).
#[derive(Debug, Clone)]
pub struct PgRoutes {
    /// The distinct stores, the default one first.
    stores: Vec<PgStore>,
    /// Use case → index in `stores` (use cases not listed are kept in the default store).
    routes: BTreeMap<String, usize>,
}

impl PgRoutes {
    /// Every use case in `default` until [`with_route`](PgRoutes::with_route) says otherwise.
    pub fn new(default: PgStore) -> Self {
        PgRoutes {
            stores: vec![default],
            routes: BTreeMap::new(),
        }
    }

    /// Keeps `use_case` in `store`. The same store (a clone of a store given before, see
    /// [`PgStore::is_same_store`]) given for several use cases is one store.
    pub fn with_route(mut self, use_case: impl Into<String>, store: PgStore) -> Self {
        let index = match self.stores.iter().position(|s| s.is_same_store(&store)) {
            Some(i) => i,
            None => {
                self.stores.push(store);
                self.stores.len() - 1
            }
        };
        self.routes.insert(use_case.into(), index);
        self
    }

    /// The store `use_case` is kept in.
    pub fn store_for(&self, use_case: &str) -> &PgStore {
        &self.stores[self.routes.get(use_case).copied().unwrap_or(0)]
    }

    /// The distinct stores, the default one first (each one to migrate, ping, …).
    pub fn stores(&self) -> &[PgStore] {
        &self.stores
    }

    /// The use cases kept in the store at `index` by a route of their own (none for a default
    /// store that only holds the use cases without one).
    pub fn use_cases_of(&self, index: usize) -> Vec<&str> {
        self.routes
            .iter()
            .filter(|(_, i)| **i == index)
            .map(|(uc, _)| uc.as_str())
            .collect()
    }

    /// The stores as one [`JobStore`]: a [`RoutedStore`] (or the only store itself when there is
    /// one).
    pub fn routed(&self) -> Arc<dyn JobStore> {
        if self.stores.len() == 1 {
            return Arc::new(self.stores[0].clone());
        }
        Arc::new(self.routed_store())
    }

    /// A name of the store at `index` for logs and errors (never a connection string), as
    /// [`RoutedStore::label`] gives it.
    pub fn label(&self, index: usize) -> String {
        self.routed_store().label(index)
    }

    /// The stores as a [`RoutedStore`] (even when there is one).
    pub fn routed_store(&self) -> RoutedStore {
        let arcs: Vec<Arc<dyn JobStore>> = self
            .stores
            .iter()
            .map(|s| Arc::new(s.clone()) as Arc<dyn JobStore>)
            .collect();
        let mut routed = RoutedStore::new(Arc::clone(&arcs[0]));
        for (use_case, i) in &self.routes {
            routed = routed.with_route(use_case.clone(), Arc::clone(&arcs[*i]));
        }
        routed
    }

    /// [`PgStore::enqueue_in`] on `tx`, a transaction opened on `tx_store`'s pool, when `job`'s
    /// use case is kept in `tx_store`; otherwise [`StoreError::Unsupported`] (in
    /// [`EnqueueError::Store`]) naming both stores, before anything is written.
    pub async fn enqueue_in(
        &self,
        tx_store: &PgStore,
        tx: &tokio_postgres::Transaction<'_>,
        job: NewJob,
    ) -> Result<Enqueued, EnqueueError> {
        self.check_tx(tx_store, std::slice::from_ref(&job))?;
        tx_store.enqueue_in(tx, job).await
    }

    /// [`PgStore::enqueue_many_in`] under the rule of [`enqueue_in`](PgRoutes::enqueue_in) for
    /// every job of the batch.
    pub async fn enqueue_many_in(
        &self,
        tx_store: &PgStore,
        tx: &tokio_postgres::Transaction<'_>,
        jobs: Vec<NewJob>,
    ) -> Result<Vec<Enqueued>, EnqueueError> {
        self.check_tx(tx_store, &jobs)?;
        tx_store.enqueue_many_in(tx, jobs).await
    }

    fn check_tx(&self, tx_store: &PgStore, jobs: &[NewJob]) -> Result<(), EnqueueError> {
        let Some(job) = jobs
            .iter()
            .find(|j| !self.store_for(&j.use_case).is_same_store(tx_store))
        else {
            return Ok(());
        };
        let routed = self.routed_store();
        let home = routed.label(self.routes.get(&job.use_case).copied().unwrap_or(0));
        let tx_home = match self.stores.iter().position(|s| s.is_same_store(tx_store)) {
            Some(i) => routed.label(i),
            None => "a store outside these routes".to_owned(),
        };
        Err(EnqueueError::Store(StoreError::Unsupported(format!(
            "use case '{}' is kept in {home}, but the transaction belongs to {tx_home}: a job can \
             be enqueued in a caller's transaction only in its own store (no transaction spans \
             stores); enqueue it in a transaction of its store (PgRoutes::store_for) or outside \
             the transaction",
            job.use_case
        ))))
    }
}
